#!/usr/bin/env bash
# How the shipped demo base model (Resources/Models/demo-t1-32x40x32) was made, end to end.
# CPU: ~2.5 s per step on 2 cores here (hours); a GPU does it in minutes.
# The pretraining can be stopped at any time (touch build/STOP_PRETRAIN) and continued with the
# same command (it passes --resume); STEPS is where the shipped model stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-2600}
DP=.venv/bin/diffusion-peft
[ -f build/demo_pretrain_data/manifest.json ] || \
  $DP simulate --n 400 --contrasts t1 --atrophy 0:0.3 --lesions none --shape 32 40 32 --spacing 6 --seed 1000 \
    --out build/demo_pretrain_data
[ -f build/demo_heldout/manifest.json ] || \
  $DP simulate --n 16 --contrasts t1 --atrophy 0:0.3 --lesions none --shape 32 40 32 --spacing 6 --seed 5000 \
    --out build/demo_heldout
OMP_WAIT_POLICY=PASSIVE $DP pretrain build/demo_pretrain_data/manifest.json --contrast t1 \
  --out build/demo-t1-32x40x32 --shape 32 40 32 --spacing 6 --channels 32 64 64 --attention-levels 0 0 1 \
  --head-channels 64 --prediction v --batch 2 --lr 3e-4 --warmup 100 --steps "$STEPS" --checkpoint-every 100 \
  --val-fraction 0.05 --val-every 250 --seed 0 --threads 2 --workdir build/demo_model_work \
  --stop-file build/STOP_PRETRAIN --resume
$DP assess build/demo-t1-32x40x32 build/demo_heldout/manifest.json --contrast t1 \
  --train build/demo_pretrain_data/manifest.json --n 16 --steps 50 --seed 0 --out build/demo_assessment
.venv/bin/python scripts/write_model_card.py build/demo-t1-32x40x32 build/demo_model_work build/demo_assessment
rm -rf Resources/Models/demo-t1-32x40x32 && mkdir -p Resources/Models && cp -r build/demo-t1-32x40x32 Resources/Models/
