"""Ray batch throughput: one node vs two nodes on this machine, and the overhead of the
segmented path against the single-machine path.

    python benchmarks/ray.py [--files 3] [--seconds 8]

Starts its own loopback cluster (`ray start`, 1 CPU per node), anonymizes a folder of 720p30
clips with the default config on 1 node, then adds a node and runs again (same clips, same
run); then one clip through the single-machine path and through 2 nodes. Writes
benchmarks/results/ray.json. On a 2-core machine "2 nodes" is 2 worker processes sharing the
same two cores as the single-machine path's threads: the ratio shows what cutting and joining
cost, not what a real second machine would add.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is named ray.py: its folder goes last on the path, so `import ray` finds Ray
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "benchmarks"))
import ray  # noqa: E402,F401  (the real Ray, cached before benchmarks/pipeline.py edits the path)

os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each clip")
    ap.add_argument("--segment-s", type=float, default=2.0)
    args = ap.parse_args()
    from machine import describe
    from pipeline import make_clip
    from raycluster import LoopbackCluster

    from streamguard.config import load_config
    from streamguard.batch.distributed import anonymize_on_ray
    from streamguard.pipeline import anonymize_file

    work = ROOT / "benchmarks" / ".work"
    lib = work / "ray-library"
    lib.mkdir(parents=True, exist_ok=True)
    base = make_clip(work / f"faces_720p_{args.seconds:g}s.mp4", 1280, 720, args.seconds)
    clips = []
    for i in range(args.files):
        dst = lib / f"clip{i}.mp4"
        if not dst.exists():
            shutil.copy(base, dst)
        clips.append(dst)
    cfg = load_config(None, [f"ray.segment_s={args.segment_s}"])
    tmp = Path(tempfile.mkdtemp(prefix="sg-raybench-"))
    rows = []

    def record(name: str, nodes: int, frames: int, wall: float, extra: dict | None = None):
        row = {"run": name, "nodes": nodes, "frames": frames, "wall_s": round(wall, 2),
               "fps": round(frames / wall, 2), **(extra or {})}
        rows.append(row)
        print(f"{name:<34} {nodes:>5} {frames:>7} {wall:>8.1f} {row['fps']:>8.1f}", flush=True)

    print(f"{'run':<34} {'nodes':>5} {'frames':>7} {'wall s':>8} {'fps':>8}")
    # single machine: the baseline, same process, same clips
    t = time.perf_counter()
    frames = sum(anonymize_file(c, tmp / "single" / c.name, cfg).frames for c in clips)
    record("single machine, folder", 0, frames, time.perf_counter() - t)
    t = time.perf_counter()
    one = anonymize_file(clips[0], tmp / "single1" / clips[0].name, cfg).frames
    record("single machine, one file", 0, one, time.perf_counter() - t)

    cluster = LoopbackCluster(tmp).start()
    try:
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_worker()
            warm = anonymize_on_ray([(clips[0], tmp / f"warm{nodes}" / "w.mp4")], cfg,
                                    cluster.address)  # actors start, models load
            pairs = [(c, tmp / f"ray{nodes}" / c.name) for c in clips]
            s = anonymize_on_ray(pairs, cfg, cluster.address)
            assert not [f.error for f in s.files if f.error], s.to_dict()
            record("ray, folder", nodes, s.frames, s.wall_s,
                   {"segments": s.segments, "workers": s.workers, "warmup_s": round(warm.wall_s, 1)})
            s1 = anonymize_on_ray([(clips[0], tmp / f"ray1f{nodes}" / clips[0].name)], cfg,
                                  cluster.address)
            record("ray, one file", nodes, s1.frames, s1.wall_s, {"segments": s1.segments})
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    by = {(r["run"], r["nodes"]): r for r in rows}
    ratios = {
        "two_nodes_over_one_node_folder": round(by[("ray, folder", 2)]["fps"]
                                                / by[("ray, folder", 1)]["fps"], 2),
        "ray_two_nodes_over_single_machine_folder": round(
            by[("ray, folder", 2)]["fps"] / by[("single machine, folder", 0)]["fps"], 2),
        "ray_two_nodes_over_single_machine_one_file": round(
            by[("ray, one file", 2)]["fps"] / by[("single machine, one file", 0)]["fps"], 2),
    }
    for k, v in ratios.items():
        print(f"{k}: {v}")
    out = ROOT / "benchmarks" / "results" / "ray.json"
    out.write_text(json.dumps({"machine": describe(), "clip": "1280x720 30 fps, 5 faces",
                               "mode": cfg.protect.mode, "segment_s": args.segment_s,
                               "rows": rows, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
