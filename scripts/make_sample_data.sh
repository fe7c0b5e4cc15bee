#!/usr/bin/env bash
# Regenerates DiffusionPEFT/Resources/SampleData: three simulated FLAIR volumes (noise-free, ~56 KB
# each) on the shipped demo model's grid (32×40×32 voxels at 6 mm), offered by Sample Data → DiffusionPEFT.
# Two are enough to fine-tune the T1 demo model on FLAIR, the third is a reference to generate and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=DiffusionPEFT/Resources/SampleData
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/diffusion-peft simulate --n 3 --contrasts flair --lesions none --shape 32 40 32 --spacing 6 --snr inf \
  --seed 2000 --out "$WORK/cohort"
mkdir -p "$OUT"
for subject in sub-000 sub-001 sub-002; do
  cp "$WORK/cohort/$subject/flair.nii.gz" "$OUT/${subject}_flair.nii.gz"
done
