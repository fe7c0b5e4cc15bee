#!/usr/bin/env bash
# How the shipped multi-contrast prior (Resources/Models/prior-t1-t2-pd-32x40x32) is made, end to end:
# a class-conditioned 3D DDPM (classes t1, t2, pd; no FLAIR) on the demo model's grid and architecture,
# warm-started from the demo T1w model (its class-embedding rows start at zero, so step 0 is the demo model)
# and trained on 400 simulated subjects × 3 contrasts. It is the reconstruction prior and the base that
# FLAIR is added to by controlled fine-tuning (scripts/build_flair_priors.sh).
# CPU: ~1.5 s per step at batch 2 on one thread. Stop any time (touch build/STOP_PRIOR) and run the same
# command again: it resumes (--resume). STEPS is where the shipped model stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2000}
THREADS=${THREADS:-1}
DP=.venv/bin/diffusion-peft
source scripts/prior_data.sh
[ -f build/prior-t1-t2-pd-32x40x32/model.json ] || OMP_WAIT_POLICY=PASSIVE $DP pretrain build/prior_pretrain_data/manifest.json --contrast t1,t2,pd \
  --init-from Resources/Models/demo-t1-32x40x32 --out build/prior-t1-t2-pd-32x40x32 --shape 32 40 32 --spacing 6 \
  --channels 32 64 64 --attention-levels 0 0 1 --head-channels 64 --prediction v --batch 2 --lr 2e-4 --warmup 50 \
  --steps "$STEPS" --checkpoint-every 100 --val-fraction 0.03 --val-every 250 --seed 0 --threads "$THREADS" \
  --workdir build/prior_work --stop-file build/STOP_PRIOR --resume
# assessment per class on 16 held-out subjects (the same seed as the demo model's shipped assessment: the same
# held-out T1w subjects, which the card compares with)
for contrast in t1 t2 pd; do
  [ -f build/prior_assessment_$contrast/assessment.json ] || $DP assess build/prior-t1-t2-pd-32x40x32 \
    build/prior_heldout/manifest.json --contrast $contrast --train build/prior_pretrain_data/manifest.json --n 16 \
    --batch 8 --steps 50 --seed 0 --threads "$THREADS" --out build/prior_assessment_$contrast
done
.venv/bin/python scripts/write_prior_card.py build/prior-t1-t2-pd-32x40x32 build/prior_work build/prior_assessment
rm -rf Resources/Models/prior-t1-t2-pd-32x40x32 && cp -r build/prior-t1-t2-pd-32x40x32 Resources/Models/
rm -f Resources/Models/prior-t1-t2-pd-32x40x32/.diffusion-peft-output.json  # the shipped copy is not a job output
