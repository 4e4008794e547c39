"""Parameters, FLOPs and latency of the paper's networks on this machine.

    python benchmarks/models.py [--runs 100] [--quick]

IDN at 256 x 256 (paper: 25 ms on an RTX 2080Ti; 30 runs here), each generator at 256 x 256 (paper: 2.8 ms)
and per-face 128 x 128 batches of 1, 4 and 16; backends: torch eager, torch channels_last +
inference_mode, onnxruntime (CPU). Median and p99 of `--runs` timed runs after warm-up, one
thread count for all rows. Writes benchmarks/results/models.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streamguard.models import create_model  # noqa: E402


class _Fixed(torch.nn.Module):
    """A uniform (image, mask) interface; the block size is fixed per engine."""

    def __init__(self, name: str, model: torch.nn.Module, block: int):
        super().__init__()
        self.model, self.block = model, block
        self.blockwise = name.startswith("blockwise")

    def forward(self, image, mask):
        return self.model(image, self.block) if self.blockwise else self.model(image, mask)


def machine() -> dict:
    import onnxruntime

    from machine import describe

    return describe(torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                    threads=str(torch.get_num_threads()))


def flops(module: torch.nn.Module, inputs) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def time_fn(fn, runs: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def backends(wrapped: torch.nn.Module, inputs, tmp: Path):
    """(name, callable) per backend; each callable runs one inference."""
    out = []

    def eager():
        with torch.no_grad():
            wrapped(*inputs)

    out.append(("torch-eager", eager))
    cl = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
    wrapped_cl = wrapped.to(memory_format=torch.channels_last)

    def channels_last():
        with torch.inference_mode():
            wrapped_cl(*cl)

    out.append(("torch-channels_last", channels_last))
    try:
        import onnxruntime as ort

        path = tmp / "model.onnx"
        torch.onnx.export(wrapped, tuple(inputs), str(path), input_names=["image", "mask"],
                          output_names=["out"], dynamo=False)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed_all = {"image": inputs[0].numpy(), "mask": inputs[1].numpy()}
        feed = {i.name: feed_all[i.name] for i in sess.get_inputs()}
        out.append(("onnxruntime", lambda: sess.run(None, feed)))
    except Exception as exc:  # an export failure is a result to report, not a crash
        print(f"  onnxruntime skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="20 runs, for a smoke check")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "models.json"))
    args = ap.parse_args()
    runs = 20 if args.quick else args.runs
    torch.manual_seed(0)
    cases = [("idn", 256, 1), ("idn_small", 256, 1), ("blockwise", 256, 1),
             ("pixelwise", 256, 1)]
    cases += [(g, 128, b) for g in ("blockwise", "pixelwise") for b in (1, 4, 16)]
    records = []
    print(f"{'model':<10} {'input':<12} {'params':>9} {'GFLOPs':>8} {'backend':<20} "
          f"{'median ms':>10} {'p99 ms':>8} {'ms/face':>8}")
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, size, batch in cases:
            model = create_model(name).eval()
            wrapped = _Fixed(name, model, block=10).eval()
            image = torch.rand(batch, 3, size, size)
            mask = torch.ones(batch, 1, size, size)
            o = size // 4
            mask[..., o:size - o, o:size - o] = 0
            params = sum(p.numel() for p in model.parameters())
            gflops = flops(wrapped, (image, mask)) / 1e9
            # the IDN takes ~0.1-1 s a run on 2 CPU cores: 30 runs keep the script near 5 minutes
            n = max(10, min(runs, 30)) if name.startswith("idn") else runs
            for backend, fn in backends(wrapped, [image, mask], Path(tmpdir)):
                med, p99 = time_fn(fn, n)
                rec = {"model": name, "input": f"{batch}x3x{size}x{size}", "batch": batch,
                       "params": params, "gflops": round(gflops, 3), "backend": backend,
                       "median_ms": round(med, 3), "p99_ms": round(p99, 3),
                       "ms_per_face": round(med / batch, 3), "runs": n}
                records.append(rec)
                print(f"{name:<10} {rec['input']:<12} {params:>9,} {gflops:>8.2f} {backend:<20} "
                      f"{med:>10.2f} {p99:>8.2f} {med / batch:>8.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine(), "records": records,
                                          "paper": {"idn_256_ms_2080ti": 25,
                                                    "generator_ms_2080ti": 2.8}},
                                         indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
