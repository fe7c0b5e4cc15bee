#!/usr/bin/env bash
# Stage 2 of the shipped multi-contrast prior (run by scripts/build_prior_model.sh after stage 1). Stage 1's samples
# keep the ventricles faint and the inner structure blotchy, and more sampler steps do not change that; this stage
# trains on from stage 1's package (START) at half its learning rate with an exponential moving average of the
# weights (--ema 0.999, written as the model) on the same data. Stop any time (touch build/STOP_PRIOR2) and run
# again: it resumes. STEPS=N with N at or below the step reached ends the run there and writes the package;
# 14,063 is where the shipped model stopped (about 6.8 h of one thread).
# The shipped run was started while stage 1 was the shipped package, so its checkpoint (build/prior2_work) records
# START=Resources/Models/prior-t1-t2-pd-32x40x32; to resume that checkpoint, pass that START (the weights come from
# the checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-14063}
THREADS=${THREADS:-1}
START=${START:-build/prior_stage1}
DP=.venv/bin/diffusion-peft
source scripts/prior_data.sh
[ -f build/prior2/model.json ] || OMP_WAIT_POLICY=PASSIVE $DP pretrain build/prior_pretrain_data/manifest.json \
  --contrast t1,t2,pd --init-from "$START" --ema 0.999 --out build/prior2 --shape 32 40 32 --spacing 6 \
  --channels 32 64 64 --attention-levels 0 0 1 --head-channels 64 --prediction v --batch 2 --lr 1e-4 --warmup 50 \
  --steps "$STEPS" --checkpoint-every 100 --val-fraction 0.03 --val-every 500 --seed 1 --threads "$THREADS" \
  --workdir build/prior2_work --stop-file build/STOP_PRIOR2 --resume
