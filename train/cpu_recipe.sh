#!/usr/bin/env bash
# Train every shipped model on the registry corpus, on a CPU, resumably. Re-running continues
# each run from its checkpoint until its time budget is spent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -f .cache/streamguard/faces/split.txt ] || $PY train/data/build_corpus.py
C=train/configs/cpu.toml
$PY train/depixelizer.py --config $C
# (runs/unet: 7 minutes, pixel losses only; trained once, kept)
[ -f runs/unet/ckpt.pt ] || $PY train/depixelizer.py --config $C --set model='"unet"' \
    --set out_dir='"runs/unet"' --set time_budget_s=420 --set loss_backbone='"none"'
$PY train/depixelizer.py --config $C --set model='"srres"' --set out_dir='"runs/srres"' \
    --set time_budget_s=300 --set loss_backbone='"none"'
$PY train/generator.py --config $C
$PY train/generator.py --config $C --set model='"pixelwise"' --set out_dir='"runs/pixelwise"' \
    --set time_budget_s=240
# beyond the paper: the identity-aware block-wise generator (ε 16/255), trained against
# bicubic, Gaussian and the IDN, never against the held-out U-Net / SR networks, with the look
# priced (lambda_look: a mosaic a viewer cannot tell from a bare one). The shipped one had its
# first 683 steps (batch 16, look 30) on a GPU (train/gpu_recipe.sh, runs/look30), then these
# last steps at look 50 on the CPU, resumed from that checkpoint
$PY train/generator.py --config $C --set objective='"identity"' \
    --set out_dir='"runs/blockwise_identity"' --set model_args='{eps = 0.0627}' \
    --set lambda_look=30.0 --set time_budget_s=600
$PY train/generator.py --config $C --set objective='"identity"' \
    --set out_dir='"runs/blockwise_identity"' --set model_args='{eps = 0.0627}' \
    --set lambda_look=50.0 --set time_budget_s=1500
