"""The long fuzz campaign: many seeded mutants of a clip through `streamguard anonymize`.

    python benchmarks/fuzz.py [--runs 300] [--seed 0]

Each mutant (byte flips, truncation, dropped/duplicated packets, a wrong header duration, a
damaged audio stream; MPEG-TS pieces joined as cameras write them, at another size, jumping
ahead or switching codec; a TS with its PAT/PMT lost for a while, a broken moov, a fragmented
MP4 cut mid-fragment, lost B-frames; tests/fuzzing.py) must end with a documented exit code within the time
bound, without a traceback or a partial file, and every face found in its input frames must be
protected in the output. Prints exit codes per mutation and writes
benchmarks/results/fuzz.json (failures listed with the seed that reproduces them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    args = ap.parse_args()

    from fuzzing import MUTATIONS, SUFFIX, check_mutant, mutate
    from machine import describe
    from media import Sprite, face_crops, write_clip

    from streamguard.detect.mediapipe import BlazeFace

    work = Path(tempfile.mkdtemp(prefix="streamguard-fuzz-"))
    # B-frames (veryfast) so that "bframes" has some to lose
    seed_clip = write_clip(work / "seed.mp4", [Sprite(face_crops()[0], 110, (120, 60), (2, 1))],
                           width=640, height=360, n_frames=45, preset="veryfast").path
    finder = BlazeFace("full_range", 0.5)
    exits: dict[str, Counter] = defaultdict(Counter)
    failures, t0 = [], time.time()
    for run in range(args.runs):
        kind = MUTATIONS[run % len(MUTATIONS)]
        seed = args.seed + run
        mutant = work / f"{kind}-{seed}{SUFFIX.get(kind, '.mp4')}"
        out = work / f"out-{run}"
        out.mkdir()
        try:
            mutate(seed_clip, mutant, kind, seed)
            code, _ = check_mutant(mutant, out, finder)
            exits[kind][code] += 1
        except Exception as exc:  # noqa: BLE001 - every broken promise is recorded
            failures.append({"kind": kind, "seed": seed, "error": str(exc)[:300]})
            exits[kind]["FAILED"] += 1
        mutant.unlink(missing_ok=True)
        print(f"\r{run + 1}/{args.runs} runs, {len(failures)} failures", end="", flush=True)
    finder.close()
    print(f"\n\n{'mutation':<10} exit codes")
    for kind in MUTATIONS:
        print(f"{kind:<10} {dict(exits[kind])}")
    doc = {"machine": describe(), "runs": args.runs, "seed": args.seed,
           "wall_s": round(time.time() - t0, 1),
           "exit_codes": {k: {str(c): n for c, n in v.items()} for k, v in exits.items()},
           "failures": failures}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(failures)} failures; wrote {args.out}")


if __name__ == "__main__":
    main()
