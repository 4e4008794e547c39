"""Still pictures: what `detect.still_tiles` saves on a fixed camera, end to end.

    python benchmarks/still.py [--repeats 2]

Builds two 10 s 720p30 clips of a fixed camera (the textured background of the other
benchmarks, still): nobody in view, and two people (faces of 120 and 60 px walking slowly).
Runs `streamguard anonymize` on each in the default mode and with `detect.still_tiles=0`,
alternating, `--repeats` times, each as its own process timed end to end; prints the median
fps of each and their ratio. Writes benchmarks/results/still.json.
"""

from __future__ import annotations

import argparse
import json
import statistics

from pipeline import RESULTS, WORK, frames_of, machine, run_streamguard


def make_clip(name: str, people: int):
    from media import Sprite, face_crops, write_clip

    path = WORK / f"{name}.mp4"
    if not path.exists():
        sprites = []
        if people:
            crops = face_crops()
            sprites = [Sprite(crops[0], 120, (200, 150), (1.2, 0.2)),
                       Sprite(crops[1], 60, (900, 400), (-0.8, 0.1))][:people]
        tmp = path.with_suffix(".tmp.mp4")
        write_clip(tmp, sprites, width=1280, height=720, n_frames=300, fps=30, gop=30)
        tmp.rename(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, people in (("still_nobody_720p", 0), ("still_two_people_720p", 2)):
        clip = make_clip(name, people)
        frames = frames_of(clip)
        fps: dict[str, list[float]] = {"still_tiles=0": [], "default (still_tiles=2)": []}
        for _ in range(args.repeats):
            for run, overrides in (("still_tiles=0", ["detect.still_tiles=0"]),
                                   ("default (still_tiles=2)", [])):
                wall, _ = run_streamguard(clip, WORK / f"{name}_out.mp4", *overrides)
                fps[run].append(frames / wall)
        median = {run: statistics.median(v) for run, v in fps.items()}
        row = {"clip": name, "frames": frames, "fps": {k: [round(x, 2) for x in v]
                                                       for k, v in fps.items()},
               "median_fps": {k: round(v, 2) for k, v in median.items()},
               "ratio": round(median["default (still_tiles=2)"] / median["still_tiles=0"], 3)}
        rows.append(row)
        print(f"{name:<24} still_tiles=0 {median['still_tiles=0']:5.1f} fps   default "
              f"{median['default (still_tiles=2)']:5.1f} fps   x{row['ratio']:.2f}", flush=True)
    (RESULTS / "still.json").write_text(json.dumps({"machine": machine(), "rows": rows},
                                                   indent=2) + "\n")
    print(f"wrote {RESULTS / 'still.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
