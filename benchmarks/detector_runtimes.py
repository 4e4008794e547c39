"""The detector's two runtimes on the same frames: LiteRT (the CPU default) and torch
(`detect.runtime = "torch"`, the GPU path), speed and agreement.

    python benchmarks/detector_runtimes.py [--sizes 720,1080] [--frames 60] [--device cpu]

On the recall benchmark's clips (tests/videotruth.py: moving, edge-cut, turned, dark faces...,
the first `--frames` frames of each) every frame goes through the whole tiled detector (full
frame, tiles, track windows; tracking hints from the detector's own previous boxes) of each
runtime. Reported per size: the median and p90 detection time per frame of each runtime
(same process, interleaved frame by frame: the VM is noisy), and how the boxes agree: the
share of LiteRT's boxes that torch boxes at IoU >= 0.9, and the faces each finds that the
other does not. Writes benchmarks/results/detector_runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))
WORK = ROOT / "benchmarks" / ".work"


def frames_of(path: Path, n: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="720,1080")
    ap.add_argument("--frames", type=int, default=60, help="frames of each clip")
    ap.add_argument("--device", default="cpu", help="the torch runtime's device")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "detector_runtimes.json"))
    args = ap.parse_args()

    import torch

    from machine import describe
    from videotruth import face_sources, scenarios, write_scenario

    from streamguard.config import DetectConfig
    from streamguard.detect import create_detector
    from streamguard.detect.geometry import box_iou

    WORK.mkdir(parents=True, exist_ok=True)
    sources = face_sources()
    records = []
    for height in (int(h) for h in args.sizes.split(",")):
        width = height * 16 // 9
        times = {"litert": [], "torch": []}
        boxes = agreed = only_lite = only_torch = 0
        for sc in scenarios(width, height, args.frames, len(sources)):
            clip = WORK / f"runtimes_{sc.name}_{height}p_{args.frames}.mp4"
            if not clip.exists():
                write_scenario(sc, sources, clip)
            dets = {"litert": create_detector(DetectConfig(runtime="litert")),
                    "torch": create_detector(DetectConfig(runtime="torch", device=args.device))}
            hints = {k: None for k in dets}
            try:
                for i, frame in enumerate(frames_of(clip, args.frames)):
                    found = {}
                    for name, det in dets.items():
                        t = time.perf_counter()
                        found[name] = det.detect(frame, i, around=hints[name])
                        if args.device == "cuda":
                            torch.cuda.synchronize()
                        times[name].append((time.perf_counter() - t) * 1000)
                        hints[name] = found[name].xyxy if len(found[name]) else None
                    a, b = found["litert"].xyxy, found["torch"].xyxy
                    boxes += len(a)
                    if len(a) and len(b):
                        iou = box_iou(a, b)
                        agreed += int((iou.max(axis=1) >= 0.9).sum())
                        only_lite += int((iou.max(axis=1) < 0.3).sum())
                        only_torch += int((iou.max(axis=0) < 0.3).sum())
                    else:
                        only_lite += len(a)
                        only_torch += len(b)
            finally:
                for det in dets.values():
                    det.close()
        rec = {"resolution": f"{width}x{height}", "frames": len(times["litert"]),
               "device": args.device,
               **{f"{k}_ms_p50": round(float(np.median(v)), 2) for k, v in times.items()},
               **{f"{k}_ms_p90": round(float(np.percentile(v, 90)), 2) for k, v in times.items()},
               "litert_boxes": boxes, "agreed_iou_0_9": agreed,
               "found_by_litert_only": only_lite, "found_by_torch_only": only_torch}
        rec["torch_over_litert"] = round(rec["torch_ms_p50"] / rec["litert_ms_p50"], 2)
        records.append(rec)
        print(f"{rec['resolution']}: {rec['frames']} frames; detection p50 LiteRT "
              f"{rec['litert_ms_p50']} ms, torch ({args.device}) {rec['torch_ms_p50']} ms "
              f"({rec['torch_over_litert']}x); boxes agreeing at IoU >= 0.9: {agreed} of "
              f"{boxes}; faces only LiteRT found {only_lite}, only torch {only_torch}",
              flush=True)
    out = Path(args.out)
    out.write_text(json.dumps({"machine": describe(torch=torch.__version__),
                               "records": records}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
