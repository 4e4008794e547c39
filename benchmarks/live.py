"""Live latency: a 720p30 clip played in real time through `LiveStream` (mosaic, tiles on).

    python benchmarks/live.py [--seconds 20]

Reports sustained output fps, p50/p99 added latency (frame decoded -> frame handed to the
outputs, ZeroMQ PUB here) and dropped frames with 1 worker (in process) and 2 worker processes
(ZeroMQ PUSH/PULL), same run, and writes benchmarks/results/live.json.
Targets on the 2-core VM: 30 fps, no drops, p99 <= 150 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = ap.parse_args()
    from machine import describe
    from pipeline import make_clip

    from streamguard.config import StreamConfig, load_config
    from streamguard.live import LiveStream

    clip = make_clip(ROOT / "benchmarks" / ".work" / "faces_720p_10s.mp4", 1280, 720, 10)
    records = []
    for workers in (int(w) for w in args.workers.split(",")):
        cfg = load_config(None, [f"live.workers={workers}"])
        stream = LiveStream(StreamConfig(name="bench", input=str(clip), loop=True,
                                         zmq="tcp://127.0.0.1:*"), cfg).start()
        time.sleep(3)  # warm-up: the first tiles, caches
        base = stream.stats.frames_out, stream.stats.dropped
        stream.stats.latencies_ms.clear()
        t0 = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        snap = stream.stats.snapshot()
        stream.stop()
        rec = {"resolution": "1280x720", "input_fps": 30, "workers": workers,
               "mode": cfg.protect.mode,
               "fps": round((snap["frames_out"] - base[0]) / elapsed, 2),
               "latency_p50_ms": snap["latency_p50_ms"],
               "latency_p99_ms": snap["latency_p99_ms"],
               "dropped": snap["dropped"] - base[1], "seconds": args.seconds}
        records.append(rec)
        print(f"720p30 live, {workers} worker(s): {rec['fps']} fps, p50 {rec['latency_p50_ms']}"
              f" ms, p99 {rec['latency_p99_ms']} ms, dropped {rec['dropped']}", flush=True)
    out = ROOT / "benchmarks" / "results" / "live.json"
    out.write_text(json.dumps({"machine": describe(), "records": records}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
