"""GPU figures for the paper's claims: IDN at 256 x 256 (paper: 25 ms, RTX 2080Ti; target here
<= 5 ms) and the generators at 256 x 256 (paper: 2.8 ms; target <= 0.5 ms), per backend:
torch fp32, torch fp16 (autocast), torch.compile fp16, CUDA graphs fp16; plus per-face batches
and NVENC encode throughput when PyAV is importable. CUDA timed with events after warm-up.

    python benchmarks/gpu.py [--runs 100] [--out benchmarks/results/gpu-NAME.json]

Also the face detector's BlazeFace graph in torch (the `detect.runtime = "torch"` path) at a
1080p frame's batch and eight streams' (carry `.cache/streamguard/torch` to the machine).

Needs only torch (and optionally av) from the machine: run through benchmarks/gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import statistics
from fractions import Fraction
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from streamguard.models import create_model  # noqa: E402


def cuda_times(fn, runs: int, warmup: int = 10) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def variants(model: torch.nn.Module, inputs: list[torch.Tensor], compile_it: bool = True):
    """(backend name, callable) pairs; a variant that fails to build is reported, not fatal.
    torch.compile (inductor's default mode: its autotuning modes take minutes per model) runs
    only where `compile_it`."""

    def eager32():
        with torch.inference_mode():
            model(*inputs)

    yield "torch-fp32", eager32
    half = [x.half() for x in inputs]
    model16 = model.half()

    def eager16():
        with torch.inference_mode():
            model16(*half)

    yield "torch-fp16", eager16
    if compile_it:
        try:
            compiled = torch.compile(model16)

            def comp():
                with torch.inference_mode():
                    compiled(*half)

            comp()
            yield "compile-fp16", comp
        except Exception as exc:  # report and go on: one backend failing is a result
            print(f"  compile failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    try:
        static = [x.clone() for x in half]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                model16(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            model16(*static)
        yield "cudagraph-fp16", graph.replay
    except Exception as exc:  # attention's masked softmax etc. may not capture: report it
        print(f"  CUDA graph failed: {type(exc).__name__}: {exc}", file=sys.stderr)


class _Fixed(torch.nn.Module):
    def __init__(self, name, model):
        super().__init__()
        self.model, self.blockwise = model, name.startswith("blockwise")

    def forward(self, image, mask):
        return self.model(image, 10) if self.blockwise else self.model(image, mask)


def blazeface(runs: int, write, done: list[dict]) -> list[dict]:
    """The face detector's model on the GPU (`detect.runtime = "torch"`): the full-range
    BlazeFace graph at 192 x 192, batch 14 (a 1080p frame: the whole frame, 12 tiles, one
    picture of track windows) and 8 x 14 (eight such streams in one call). Needs the graph
    converted here (`.cache/streamguard/torch/`, carried to the machine) and safetensors."""
    import os

    try:
        from streamguard.assets import ASSETS, DETECTOR_MODELS
        from streamguard.detect.tflite_graph import build_module, load_graph
    except ImportError as exc:
        return [{"model": "blazeface", "skipped": f"not importable here: {exc}"}]
    name = DETECTOR_MODELS["full_range"]
    cache = Path(os.environ.get("STREAMGUARD_CACHE", ROOT / ".cache" / "streamguard"))
    try:
        graph = load_graph(cache / "torch" / (Path(name).stem + ".safetensors"),
                           ASSETS[name].sha256)
    except ImportError as exc:
        graph, why = None, f"safetensors missing: {exc}"
    else:
        why = "no converted graph in the cache: run the torch detector once, carry the cache"
    if graph is None:
        return [{"model": "blazeface", "skipped": why}]
    model = build_module(graph).cuda()
    records = []
    for batch in (14, 112):
        x = torch.rand(batch, 192, 192, 3, device="cuda") * 2 - 1
        for backend, fn in variants(model, [x], compile_it=batch == 14):
            med, p99 = cuda_times(fn, runs)
            rec = {"model": "blazeface_full_range", "input": f"{batch}x192x192x3",
                   "backend": backend, "median_ms": round(med, 3), "p99_ms": round(p99, 3),
                   "ms_per_image": round(med / batch, 4)}
            records.append(rec)
            print(f"blazeface  {rec['input']:<14} {backend:<16} {med:8.3f} ms  p99 {p99:8.3f}",
                  flush=True)
            write(done + records)
    return records


def nvenc(frames: int = 300) -> list[dict]:
    try:
        import av
        import numpy as np
    except ImportError as exc:
        return [{"skipped": f"PyAV not importable: {exc}"}]
    out = []
    for codec in ("h264_nvenc", "libx264"):
        for w, h in ((1280, 720), (1920, 1080)):
            try:
                ctx = av.CodecContext.create(codec, "w")
                ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
                ctx.time_base = Fraction(1, 30)
                ctx.open()
                img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                t = time.perf_counter()
                for i in range(frames):
                    vf.pts = i
                    ctx.encode(vf)
                ctx.encode(None)
                out.append({"codec": codec, "resolution": f"{w}x{h}",
                            "fps": round(frames / (time.perf_counter() - t), 1)})
            except Exception as exc:  # no NVENC on this GPU/driver is a result too
                out.append({"codec": codec, "resolution": f"{w}x{h}", "error": str(exc)[:200]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from machine import describe

    dev = torch.cuda.get_device_name()
    torch.backends.cudnn.benchmark = True
    out = Path(args.out or ROOT / "benchmarks" / "results" /
               f"gpu-{dev.replace(' ', '_').replace('/', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(records, encode=None):
        doc = {"machine": describe(gpu=dev, torch=torch.__version__,
                                   cuda=str(torch.version.cuda)),
               "paper": {"idn_256_ms_2080ti": 25, "generator_ms_2080ti": 2.8},
               "targets": {"idn_256_ms": 5, "generator_256_ms": 0.5},
               "records": records, "encode": encode or [], "complete": encode is not None}
        out.write_text(json.dumps(doc, indent=2) + "\n")

    records = []
    cases = [("idn", 256, 1), ("idn_small", 256, 1), ("blockwise", 256, 1), ("pixelwise", 256, 1),
             ("blockwise", 128, 16), ("pixelwise", 128, 16), ("idn", 256, 8)]
    for name, size, batch in cases:
        model = _Fixed(name, create_model(name)).cuda().eval()
        image = torch.rand(batch, 3, size, size, device="cuda")
        mask = torch.ones(batch, 1, size, size, device="cuda")
        o = size // 4
        mask[..., o:size - o, o:size - o] = 0
        compile_it = batch == 1 and name in ("idn", "blockwise")
        for backend, fn in variants(model, [image, mask], compile_it):
            med, p99 = cuda_times(fn, args.runs)
            rec = {"model": name, "input": f"{batch}x3x{size}x{size}", "backend": backend,
                   "median_ms": round(med, 3), "p99_ms": round(p99, 3),
                   "ms_per_image": round(med / batch, 4)}
            records.append(rec)
            print(f"{name:<10} {rec['input']:<14} {backend:<16} {med:8.3f} ms  p99 {p99:8.3f}",
                  flush=True)
            write(records)  # after every case: a run cut short still leaves its figures
    records += blazeface(args.runs, write, records)
    write(records, nvenc())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
