#!/usr/bin/env bash
# How the shipped multi-contrast prior (Resources/Models/prior-t1-t2-pd-32x40x32) is made, end to end:
# a class-conditioned 3D DDPM (classes t1, t2, pd; no FLAIR) on the demo model's grid and architecture, trained on
# 400 simulated subjects × 3 contrasts in two stages:
#   stage 1  2000 steps at lr 2e-4 from the demo T1w model (its class-embedding rows start at zero, so step 0 is the
#            demo model) → build/prior_stage1
#   stage 2  scripts/continue_prior_model.sh: 14,063 steps more at lr 1e-4 with a weight average (EMA 0.999), which
#            is what makes the ventricles show in the samples → build/prior2
# then the assessment per class, the package copied into Resources/ and its card (scripts/write_prior_card.py).
# It is the reconstruction prior and the base that FLAIR is added to (scripts/build_flair_priors.sh).
# CPU: ~1.5 s per step at batch 2 on one thread (stage 1 ≈ 1.2 h, stage 2 ≈ 6.8 h). Stop any time (touch
# build/STOP_PRIOR, or build/STOP_PRIOR2 in stage 2) and run the same command again: each stage resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2000}
THREADS=${THREADS:-1}
DP=.venv/bin/diffusion-peft
OUT=Resources/Models/prior-t1-t2-pd-32x40x32
source scripts/prior_data.sh
[ -f build/prior_stage1/model.json ] || OMP_WAIT_POLICY=PASSIVE $DP pretrain build/prior_pretrain_data/manifest.json --contrast t1,t2,pd \
  --init-from Resources/Models/demo-t1-32x40x32 --out build/prior_stage1 --shape 32 40 32 --spacing 6 \
  --channels 32 64 64 --attention-levels 0 0 1 --head-channels 64 --prediction v --batch 2 --lr 2e-4 --warmup 50 \
  --steps "$STEPS" --checkpoint-every 100 --val-fraction 0.03 --val-every 250 --seed 0 --threads "$THREADS" \
  --workdir build/prior_work --stop-file build/STOP_PRIOR --resume
THREADS=$THREADS bash scripts/continue_prior_model.sh  # skips itself once build/prior2 exists
# assessment per class on 16 held-out subjects, and the demo T1w model's by the same command on the same held-out
# T1w subjects (the card's baseline column)
assess() {  # MODEL CONTRAST OUT
  [ -f "$3/assessment.json" ] || $DP assess "$1" build/prior_heldout/manifest.json --contrast "$2" \
    --train build/prior_pretrain_data/manifest.json --n 16 --batch 8 --steps 50 --seed 0 --threads "$THREADS" --out "$3"
}
for contrast in t1 t2 pd; do assess build/prior2 $contrast build/prior_assessment_$contrast; done
assess Resources/Models/demo-t1-32x40x32 t1 build/prior_assessment_demo_t1
rm -rf $OUT && cp -r build/prior2 $OUT
rm -f $OUT/.diffusion-peft-output.json  # the shipped copy is not a job output
.venv/bin/python scripts/write_prior_card.py $OUT build/prior2_work build/prior_assessment
