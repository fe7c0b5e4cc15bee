# The multi-contrast prior's data, shared by scripts/build_prior_model.sh and scripts/continue_prior_model.sh
# (sourced: needs DP): 400 training subjects × t1, t2, pd and 16 held-out subjects (also FLAIR) at 6 mm.
[ -f build/prior_pretrain_data/manifest.json ] || \
  $DP simulate --n 400 --contrasts t1,t2,pd --atrophy 0:0.3 --lesions none --shape 32 40 32 --spacing 6 --seed 1000 \
    --out build/prior_pretrain_data
[ -f build/prior_heldout/manifest.json ] || \
  $DP simulate --n 16 --contrasts t1,t2,pd,flair --atrophy 0:0.3 --lesions none --shape 32 40 32 --spacing 6 \
    --seed 5000 --out build/prior_heldout
