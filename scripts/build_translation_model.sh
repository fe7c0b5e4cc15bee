#!/usr/bin/env bash
# How the shipped T1w → FLAIR translation model (Resources/Models/t1-to-flair-64x80x64) is made, end to end.
# 160 simulated subjects at 3 mm (twice the demo's resolution), puzzle p = 2 (the U-Net runs at 32×40×32),
# BBDM bridge with x0 prediction and the puzzle-gradient loss, lr 1e-3 (2e-4 learnt far slower: docs/translation.md).
# CPU: ~1.2 s per step at batch 2 on one quiet core.
# Stop any time (touch build/STOP_TRANSLATION) and run the same command again: it resumes (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1200}
THREADS=${THREADS:-2}
DP=.venv/bin/diffusion-peft
[ -f build/translation_train/manifest.json ] || \
  $DP simulate --n 160 --contrasts t1,t2,flair --atrophy 0:0.5 --lesions none --shape 64 80 64 --spacing 3 \
    --seed 7000 --out build/translation_train --threads "$THREADS"
[ -f build/translation_heldout/manifest.json ] || \
  $DP simulate --n 8 --contrasts t1,t2,flair --atrophy 0:0.5 --lesions none --shape 64 80 64 --spacing 3 \
    --seed 9000 --out build/translation_heldout --threads "$THREADS"
OMP_WAIT_POLICY=PASSIVE $DP translate-train build/translation_train/manifest.json --source t1 --target flair \
  --out build/t1-to-flair-64x80x64 --shape 64 80 64 --spacing 3 --channels 16 32 64 --norm-groups 16 \
  --head-channels 32 --puzzle 2 --bridge bbdm --prediction x0 --pg-weight 0.1 --batch 2 --lr 1e-3 \
  --steps "$STEPS" --checkpoint-every 100 --val-fraction 0.05 --val-every 200 --seed 0 --threads "$THREADS" \
  --workdir build/translation_work --stop-file build/STOP_TRANSLATION --resume
