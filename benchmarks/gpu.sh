#!/usr/bin/env bash
# For a fresh NVIDIA machine with only its preinstalled Python packages (torch, maybe PyAV):
# installs nothing, uses the project from this working tree, finishes in about 5 minutes and
# writes benchmarks/results/gpu-*.json (copied to $OUT when set, for the device tool).
# The detector's rows need the converted BlazeFace graph: run the torch detector once here
# (`python benchmarks/detector_runtimes.py --frames 2 --sizes 720`) and carry
# .cache/streamguard/torch to the machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout ${GPU_BENCH_S:-420} $PY benchmarks/gpu.py --runs ${RUNS:-100}
status=$?
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu-*.json "$OUT"/ 2>/dev/null || true; fi
exit $status
