#!/usr/bin/env bash
# Train every shipped model on the registry corpus, on a CPU, resumably. Re-running continues
# each run from its checkpoint until its time budget is spent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -f .cache/streamguard/faces/split.txt ] || $PY train/data/build_corpus.py
C=train/configs/cpu.toml
$PY train/depixelizer.py --config $C
$PY train/depixelizer.py --config $C --set model='"unet"' --set out_dir='"runs/unet"' \
    --set time_budget_s=600 --set loss_backbone='"none"'
$PY train/depixelizer.py --config $C --set model='"srres"' --set out_dir='"runs/srres"' \
    --set time_budget_s=480 --set loss_backbone='"none"'
$PY train/generator.py --config $C
$PY train/generator.py --config $C --set model='"pixelwise"' --set out_dir='"runs/pixelwise"' \
    --set time_budget_s=360
