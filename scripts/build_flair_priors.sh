#!/usr/bin/env bash
# The priors of the stroke paper's study in miniature (docs/reconstruction.md): how best to get a FLAIR prior
# from 20 FLAIR subjects and a T1w/T2w/PD prior. Uses the shipped prior (Resources/Models/prior-t1-t2-pd-32x40x32, scripts/build_prior_model.sh).
#   (1) scratch      a prior trained on the 20 FLAIR subjects only (same architecture, random start)
#   (2) prior        the T1w/T2w/PD prior as it is (its nearest class, chosen on validation by the benchmark)
#   (3) controlled   controlled fine-tuning: a new class "flair", lr × 0.1, epoch budget, early stop on validation;
#                    plus a learning-rate × steps grid without early stopping (under- and over-fine-tuning)
#   (4) tenvoo-l, lora  adapters on the same 20 subjects (class t1)
#   (5) joint        the T1w/T2w/PD prior trained further on the pretraining data + the 20 FLAIR mixed (4 classes,
#                    FLAIR a new class as in (3)), with controlled fine-tuning's learning rate and step cap: joint
#                    training at equal fine-tuning compute. JOINT_FROM=Resources/Models/demo-t1-32x40x32
#                    JOINT_STEPS=2000 JOINT_LR=2e-4 trains it from the prior's own start instead (about 1.5 h).
# Every step is resumable or skipped when its output exists; CPU hours in all (joint ≈ the prior's time).
# Usage: scripts/build_flair_priors.sh [PART ...] with PART in data controlled grid adapters scratch joint (default:
# all, in that order). Two parts at once on two cores: e.g. `… joint scratch &` and `… controlled grid adapters`.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-1}
JOINT_STEPS=${JOINT_STEPS:-400}
JOINT_LR=${JOINT_LR:-3e-5}
SCRATCH_STEPS=${SCRATCH_STEPS:-1500}
DP=.venv/bin/diffusion-peft
PRIOR=Resources/Models/prior-t1-t2-pd-32x40x32
OUT=build/flair_priors
GRID="--shape 32 40 32 --spacing 6"
ARCH="--channels 32 64 64 --attention-levels 0 0 1 --head-channels 64 --prediction v"
PARTS=${*:-data controlled grid adapters scratch joint}
mkdir -p $OUT
wants() { [[ " $PARTS " == *" $1 "* ]]; }
if wants data; then
[ -f build/flair_finetune/manifest.json ] || \
  $DP simulate --n 20 --contrasts flair --atrophy 0:0.3 --lesions none $GRID --seed 6000 --out build/flair_finetune
[ -f build/recon_validation/manifest.json ] || \
  $DP simulate --n 2 --contrasts t1,flair --atrophy 0:0.3 --lesions none $GRID --seed 4000 --out build/recon_validation
[ -f build/recon_heldout/manifest.json ] || \
  $DP simulate --n 8 --contrasts flair --atrophy 0:0.3 --lesions none $GRID --seed 9500 --out build/recon_heldout
[ -f build/prior_pretrain_data/manifest.json ] || \
  $DP simulate --n 400 --contrasts t1,t2,pd --atrophy 0:0.3 --lesions none $GRID --seed 1000 --out build/prior_pretrain_data
fi
DATA="build/flair_finetune/manifest.json --contrast flair --threads $THREADS"
# (3) controlled fine-tuning with its own budget and early stopping (the shipped recipe's defaults)
if wants controlled && [ ! -d $OUT/controlled ]; then
  $DP finetune $PRIOR $DATA --method controlled --option new_class=true --steps 400 \
  --out $OUT/controlled
fi
# (3) the grid: base learning rate (× 0.1 by the method) × steps, no early stop, no epoch cap
if wants grid; then for lr in 3e-5 3e-4 3e-3 3e-2; do
  for steps in 25 100 400; do
    [ -d $OUT/controlled_lr${lr}_s${steps} ] || $DP finetune $PRIOR $DATA --method controlled --option new_class=true \
      --option max_epochs=null --option early_stopping_patience=null --lr $lr --steps $steps \
      --out $OUT/controlled_lr${lr}_s${steps}
  done
done; fi
# (4) adapters, trained as class t1 (the classes' FLAIR-like neighbour: dark CSF)
if wants adapters; then for method in tenvoo-l lora; do
  [ -d $OUT/$method ] || $DP finetune $PRIOR $DATA --class-label 0 --method $method --rank 4 --steps 200 \
    --out $OUT/$method
done; fi
# (1) from scratch on the 20 FLAIR subjects
if wants scratch && [ ! -f $OUT/scratch/model.json ]; then OMP_WAIT_POLICY=PASSIVE $DP pretrain build/flair_finetune/manifest.json --contrast flair --out $OUT/scratch $GRID $ARCH \
  --batch 2 --lr 3e-4 --warmup 100 --steps "$SCRATCH_STEPS" --checkpoint-every 100 --val-fraction 0.1 --val-every 250 \
  --seed 0 --threads "$THREADS" --workdir $OUT/scratch_work --stop-file build/STOP_FLAIR_PRIORS --resume
fi
# (5) joint: the pretraining data and the 20 FLAIR subjects mixed, from the prior (default) or the prior's own start
JOINT_FROM=${JOINT_FROM:-$PRIOR}
if wants joint && [ ! -f $OUT/joint/model.json ]; then OMP_WAIT_POLICY=PASSIVE $DP pretrain build/prior_pretrain_data/manifest.json build/flair_finetune/manifest.json \
  --contrast t1,t2,pd,flair --init-from "$JOINT_FROM" --out $OUT/joint $GRID $ARCH --batch 2 \
  --lr "$JOINT_LR" --steps "$JOINT_STEPS" --checkpoint-every 100 --val-fraction 0.03 --val-every 100 --seed 0 \
  --threads "$THREADS" --workdir $OUT/joint_work --stop-file build/STOP_FLAIR_PRIORS --resume
fi
