#!/usr/bin/env bash
# One round of training on a lent NVIDIA machine (benchmarks/gpu.sh's companion), sized for
# the device tool's lease: about 5 minutes of wall time, several runs side by side on one GPU.
#   A (A_S s): three identity-aware block-wise generators with the look priced at
#      LOOKS (train/generator.py lambda_look), adaptive attackers against the shipped paper
#      generators, and the multi-frame attacker (through A and B);
#   B (B_S s): an adaptive attacker against each new generator.
# Everything lands in runs/ (git-ignored) and, when $OUT is set, in $OUT/runs.tgz after each
# phase. Needs: .cache/streamguard/faces and fr_feature.onnx; pydantic and its needs as wheels
# in .whl/ when the machine lacks them, fetched where pip works, e.g. for Python 3.12:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.3 pydantic_core==2.50.4 \
#     annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
# Run as: A_S=170 B_S=110 bash train/gpu_recipe.sh  (then benchmarks/gpu.sh in the same call)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
A=${A_S:-180}
B=${B_S:-120}
LOOKS=${LOOKS:-"3 10 30 100"}
mkdir -p runs/logs
# what comes back: every checkpoint without its optimizer state (the device tool brings back
# files of 16 MiB at most), plus the logs and metrics
pack() {
    [ -n "${OUT:-}" ] || return 0
    rm -rf /tmp/pack && mkdir -p /tmp/pack
    $PY - <<'PYEOF'
import shutil, torch
from pathlib import Path
for ckpt in Path("runs").glob("*/ckpt.pt"):
    if ckpt.parent.name == "logs":
        continue
    dest = Path("/tmp/pack") / ckpt.parent
    dest.mkdir(parents=True, exist_ok=True)
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    payload.pop("optimizer", None)
    torch.save(payload, dest / "ckpt.pt")
    if (ckpt.parent / "metrics.jsonl").exists():
        shutil.copy(ckpt.parent / "metrics.jsonl", dest)
PYEOF
    cp -r runs/logs /tmp/pack/runs/ 2>/dev/null
    (cd /tmp/pack && tar czf "$OUT/runs.tgz" --exclude='runs/adaptive_*' runs &&
        tar czf "$OUT/adaptive.tgz" runs/adaptive_*)
}
GEN=(--config train/configs/cpu.toml --set 'objective="identity"' --set 'attacker_ckpt="shipped:idn_small"'
     --set 'model_args={eps = 0.0627}' --set batch_size=16 --set ckpt_every=500 --set log_every=100
     --set max_steps=1000000 --set time_budget_s=$A)
pids=()
for lam in $LOOKS; do
    $PY train/generator.py "${GEN[@]}" --set lambda_look=$lam --set "out_dir=\"runs/look$lam\"" \
        > runs/logs/look$lam.log 2>&1 &
    pids+=($!)
done
for g in blockwise_paper:paper-block pixelwise_paper:paper-pixel; do
    $PY train/adaptive.py --protection shipped:${g%%:*} --out runs/adaptive_${g##*:} \
        --steps 1000000 --time-budget-s $A --batch-size 16 > runs/logs/adaptive_${g##*:}.log 2>&1 &
    pids+=($!)
done
$PY train/multiframe.py --set 'out_dir="runs/multiframe_gpu"' --set time_budget_s=$((A + B)) \
    --set batch_size=32 --set max_steps=1000000 --set ckpt_every=500 --set log_every=100 \
    > runs/logs/multiframe.log 2>&1 &
mf=$!
wait "${pids[@]}"
pack
pids=()
for lam in $LOOKS; do
    if [ -f runs/look$lam/ckpt.pt ]; then
        $PY train/adaptive.py --protection ckpt:runs/look$lam/ckpt.pt --out runs/adaptive_look$lam \
            --steps 1000000 --time-budget-s $B --batch-size 16 > runs/logs/adaptive_look$lam.log 2>&1 &
        pids+=($!)
    fi
done
wait "${pids[@]}" $mf
pack
for f in runs/logs/*.log; do echo "== $f"; grep -v Warning "$f" | tail -2; done
