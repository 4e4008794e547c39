"""The identity scorecard: can a face recognizer name the person from what an attacker recovers?

    python benchmarks/privacy.py [--quick] [--adaptive-steps 300]

Held-out identities of the registry corpus (train/data/build_corpus.py; split by identity, never
seen in training), 128 px aligned crops, the protected region = the face box grown by the
pipeline's 25 % margin (96 px) around a 64 px face box. For each pixelization ratio (the
paper's, counted on its 128 px faces: round(128·r) blocks across the face, 0.10 -> 13; the
product's default 8 blocks is r = 0.06) x protection x attacker x codec, per cell:
- rank1: the recovery's nearest neighbour in a gallery of every corpus original (one entry per
  photo) has the probe's identity; chance ~1/gallery per identity photo;
- ver_at_far1: the recovery matches its own original under the distance threshold that
  accepts 1 % of impostor pairs among corpus originals;
- dist_own: mean distance recovery <-> its own original, in the judge's embedding;
- two judges, dlib's ResNet (landmarks from the original) and FaceNet (InceptionResNetV1 run
  by TensorFlow in its own environment, `make judge-env`; --no-facenet for dlib only); every
  record names its `recognizer`, and the worse judge decides;
- the look, per (ratio, protection): PSNR of the protected image against the bare mosaic, and
  how often a logistic regression on the cells' colour statistics tells them apart
  (benchmarks/judging.py holds the budget); psnr_recovery: recovery vs bare mosaic (the
  paper's Table 5);
- 95 % Wilson intervals: with ~30 probes they are wide. Say so next to any number.
Identity is never judged by the network any generator trained with. Attackers: none (the
protected image itself), bicubic and Gaussian (no training), the IDN (white-box for the paper's
generators), the held-out U-Net and residual SR networks, and an adaptive IDN fine-tuned on
protected outputs of the training identities (someone who can run streamguard;
train/adaptive.py, runs/adaptive_<protection>/). Codec "h264": the protected crops are encoded
with libx264 CRF 23 and decoded before any attack. --candidate scores a generator that is not
shipped (it is never chosen: ship it, then score it under its product name).
Writes benchmarks/results/privacy.json and docs/privacy.md (+ docs/privacy_grid.png).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))

from streamguard.models.losses import smoothing_attacks  # noqa: E402
from streamguard.protect.pixelize import (  # noqa: E402
    CORPUS_FACE_FRACTION, pixelize_regions, ratio_to_blocks,
)
from judging import (  # noqa: E402
    LOOK_BUDGET_DB, LOOK_CLASSIFIER_MAX, Scorer, cell_features, distinguishable, judges,
    within_look_budget,
)
from train.common import load_checkpoint  # noqa: E402
from train.evaluate import load_attacker, load_split, psnr  # noqa: E402

# adaptive attackers are training runs (kept out of git): runs/adaptive_<protection>/

RATIOS = (0.06, 0.08, 0.10, 0.12)
PROTECTIONS = ("mosaic", "paper-block", "paper-pixel", "identity-block")
SHIPPED = {"paper-block": "blockwise_paper", "paper-pixel": "pixelwise_paper",
           "identity-block": "blockwise_identity"}
CORPUS = "folder:.cache/streamguard/faces"


def h264_roundtrip(images: torch.Tensor, crf: int = 23) -> torch.Tensor:
    """Encode the crops as consecutive frames of an H.264 stream and decode them back."""
    import av

    frames = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    path = ROOT / "benchmarks" / ".work" / "privacy_h264.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.codec_context.options = {"crf": str(crf), "preset": "veryfast"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            out.mux(v.encode(vf))
        out.mux(v.encode(None))
    with av.open(str(path)) as inp:
        dec = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    return torch.from_numpy(np.stack(dec)).permute(0, 3, 1, 2).float() / 255


class Protections:
    """Each protection as a function of (pixelized, mask, boxes, blocks) -> protected.
    sources: name -> "mosaic", "shipped:NAME" or "ckpt:PATH" (train/adaptive.py's forms)."""

    def __init__(self, sources: dict[str, str]):
        from train.adaptive import load_generator
        from train.generator import perturb

        self.models = {p: load_generator(src) for p, src in sources.items()}
        self._perturb = perturb

    @torch.no_grad()
    def __call__(self, name, pix, mask, boxes, blocks):
        if self.models[name] is None:
            return pix
        delta = self._perturb(self.models[name], pix, mask, boxes, blocks)
        return (pix + delta).clamp(0, 1)


def finetune_adaptive(protect, name: str, steps: int, out: Path) -> Path:
    """The IDN fine-tuned on (protected, original) pairs of the training identities
    (train/adaptive.py; a run already holding `steps` steps is reused)."""
    from train.adaptive import finetune

    return finetune(lambda pix, mask, boxes, blocks: protect(name, pix, mask, boxes, blocks),
                    out, steps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ratio 0.10 only, no adaptive attacker")
    ap.add_argument("--ratios", help="comma-separated pixelization ratios (default: all four)")
    ap.add_argument("--protections", help="comma-separated subset of " + ", ".join(PROTECTIONS))
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=SOURCE",
                    help="also score a generator: SOURCE = shipped:NAME or ckpt:PATH "
                         "(its adaptive attacker: RUNS/adaptive_NAME)")
    ap.add_argument("--adaptive-steps", type=int, default=300,
                    help="fine-tune each adaptive attacker to this many steps (a run that has "
                         "them is reused); 0 = use the runs as they are, never train")
    ap.add_argument("--no-facenet", action="store_true", help="dlib only")
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "privacy.json"))
    ap.add_argument("--no-report", action="store_true", help="leave docs/privacy.md as it is")
    args = ap.parse_args()
    runs = Path(args.runs)
    torch.manual_seed(0)
    t0 = time.time()
    scorer_judges = judges(not args.no_facenet)
    probes, boxes = load_split(CORPUS, "test")
    gallery_imgs, _ = load_split(CORPUS, None)
    ids = json.loads((ROOT / ".cache/streamguard/faces/identities.json").read_text())
    from train.datasets import FaceFolder

    gallery_files = [str(p.relative_to(p.parents[1])) for p in FaceFolder(CORPUS.split(":", 1)[1]).files]
    probe_files = [str(p.relative_to(p.parents[1])) for p in
                   FaceFolder(CORPUS.split(":", 1)[1], "test").files]
    gallery_ids = np.array([ids[f]["identity"] for f in gallery_files])
    probe_ids = np.array([ids[f]["identity"] for f in probe_files])
    own = np.array([gallery_files.index(f) for f in probe_files])
    probes_u8, gallery_u8 = to_u8(probes), to_u8(gallery_imgs)
    scorers = [Scorer(j, gallery_u8, gallery_ids) for j in scorer_judges]
    n = len(probes)
    print(f"{n} probes ({len(set(probe_ids))} identities), gallery {len(gallery_u8)}, "
          f"judges {', '.join(s.judge.name for s in scorers)}", flush=True)

    from streamguard.models.weights import available, load_shipped

    # every attacker comes from the shipped weights (streamguard/weights/)
    attackers = {"idn": load_shipped("idn_small")}
    for held in ("unet", "srres"):
        if held in available():
            attackers[held] = load_shipped(held)
    names = args.protections.split(",") if args.protections else list(PROTECTIONS)
    sources = {}
    for p in names:
        if p not in PROTECTIONS:
            raise SystemExit(f"error: unknown protection '{p}'; known: {', '.join(PROTECTIONS)}")
        if p == "mosaic" or SHIPPED[p] in available():
            sources[p] = "mosaic" if p == "mosaic" else f"shipped:{SHIPPED[p]}"
    for item in args.candidate:
        name, sep, src = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --candidate expects NAME=SOURCE, got '{item}'")
        sources[name] = src
    protect = Protections(sources)
    adaptive, adaptive_steps = {}, {}
    if not args.quick:
        for p in sources:
            if p == "mosaic":
                adaptive[p] = attackers["idn"]  # the IDN is already trained on bare mosaics
                continue
            path = runs / f"adaptive_{p}" / "ckpt.pt"
            if args.adaptive_steps:
                path = finetune_adaptive(protect, p, args.adaptive_steps, path.parent)
            elif not path.exists():
                print(f"no adaptive attacker for {p} ({path}): left out", flush=True)
                continue
            adaptive[p] = load_attacker(path)
            adaptive_steps[p] = int(load_checkpoint(path)["step"])

    ratios = ((0.10,) if args.quick else RATIOS) if not args.ratios else tuple(
        float(r) for r in args.ratios.split(","))
    records, looks, grid_rows = [], [], []
    for ratio in ratios:
        pix, mask, blocks = pixelize_regions(probes, boxes, ratio, CORPUS_FACE_FRACTION)
        for p in sources:
            protected = protect(p, pix, mask, boxes, blocks)
            look = {"ratio": ratio, "protection": p,
                    "psnr_vs_mosaic": round(float(psnr(protected, pix).mean()), 2),
                    "classifier_accuracy": distinguishable(
                        cell_features(to_u8(pix), ratio_to_blocks(ratio)),
                        cell_features(to_u8(protected), ratio_to_blocks(ratio)), np.arange(n))}
            looks.append(look)
            cells = []  # (codec, attacker, recovered) for every judge at once
            for codec in ("none", "h264"):
                seen = protected if codec == "none" else h264_roundtrip(protected)
                recoveries = {"none": seen, **smoothing_attacks(seen, boxes, blocks)}
                with torch.no_grad():
                    for a, model in attackers.items():
                        recoveries[a] = torch.cat([model(seen[i:i + 8], mask[i:i + 8])
                                                   for i in range(0, n, 8)])
                    if p in adaptive:
                        recoveries["adaptive"] = torch.cat(
                            [adaptive[p](seen[i:i + 8], mask[i:i + 8]) for i in range(0, n, 8)])
                cells += [(codec, a, rec) for a, rec in recoveries.items()]
                if ratio == 0.10 and codec == "none":
                    grid_rows.append((p, seen[:6], {k: v[:6] for k, v in recoveries.items()}))
            every = np.concatenate([to_u8(rec) for _, _, rec in cells])
            for scorer in scorers:
                emb = scorer.judge.embed(every, np.concatenate([probes_u8] * len(cells)))
                for j, (codec, a, rec) in enumerate(cells):
                    part = emb[j * n:(j + 1) * n]
                    own_d = np.linalg.norm(part - scorer.gallery[own], axis=1)
                    row = {"ratio": ratio, "protection": p, "attacker": a, "codec": codec,
                           "recognizer": scorer.judge.name,
                           "blocks_across_face": ratio_to_blocks(ratio),
                           **scorer.score(part, probe_ids, own),
                           "dist_own": round(float(own_d.mean()), 3),
                           "psnr_protected": look["psnr_vs_mosaic"],
                           "psnr_recovery": round(float(psnr(rec, pix).mean()), 2), "n": n}
                    records.append(row)
            worst = max((r for r in records if r["ratio"] == ratio and r["protection"] == p),
                        key=lambda r: r["rank1"])
            print(f"r={ratio:.2f} {p:<15} worst rank-1 {worst['rank1']:.2f} {worst['rank1_ci']} "
                  f"({worst['attacker']}, {worst['codec']}, {worst['recognizer']}); look: PSNR "
                  f"{look['psnr_vs_mosaic']:.1f} dB, told apart {look['classifier_accuracy']:.2f}"
                  f" [{time.time() - t0:.0f} s]", flush=True)

    chosen = choose_default(records, looks)
    print(f"chosen default: {chosen}", flush=True)
    out = {"machine_note": "2-core CPU VM", "probes": n, "chosen_default": chosen,
           "look_budget": {"psnr_db": LOOK_BUDGET_DB, "classifier_max": LOOK_CLASSIFIER_MAX},
           "identities": int(len(set(probe_ids))), "gallery": len(gallery_u8),
           "far1_threshold": {s.judge.name: round(s.tau, 4) for s in scorers},
           "chance_rank1": round(float(np.mean([(gallery_ids == i).sum() for i in probe_ids]))
                                 / len(gallery_u8), 4),
           "sources": sources, "adaptive_steps": adaptive_steps,
           "wall_s": round(time.time() - t0, 1), "look": looks, "records": records}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if not args.no_report:
        write_report(out, probes, grid_rows)
    print(f"wrote {args.out}" + ("" if args.no_report else " and docs/privacy.md")
          + f" ({out['wall_s']} s)")
    return 0


def to_u8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


MODE_OF = {"mosaic": "mosaic", "paper-block": "adversarial-block",
           "paper-pixel": "adversarial-pixel", "identity-block": "adversarial-identity"}


def choose_default(records: list[dict], looks: list[dict]) -> dict:
    """Lowest worst-case rank-1 (over every attacker, codec and judge) among the product's
    (ratio, protection) pairs whose look is within budget (judging.within_look_budget: PSNR
    against the bare mosaic and how often a classifier on cell statistics tells them apart);
    ties go to the finer mosaic, then to the simpler protection. Candidates (--candidate) are
    scored, never chosen: a candidate is shipped first, then scored under its product name."""
    best = None
    for look in looks:
        ratio, prot = look["ratio"], look["protection"]
        if prot not in MODE_OF or not within_look_budget(look):
            continue
        cell = [r for r in records if r["ratio"] == ratio and r["protection"] == prot]
        worst = max(r["rank1"] for r in cell)
        key = (worst, -ratio, PROTECTIONS.index(prot))
        if best is None or key < best[0]:
            best = (key, {"ratio": ratio, "protection": prot, "mode": MODE_OF[prot],
                          "blocks": ratio_to_blocks(ratio), "worst_rank1": worst,
                          "psnr_protected": look["psnr_vs_mosaic"],
                          "classifier_accuracy": look["classifier_accuracy"]})
    return best[1] if best else {}


def write_report(out: dict, probes: torch.Tensor, grid_rows) -> None:
    recs = out["records"]
    budget = out["look_budget"]
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    lines = [
        "# Identity scorecard",
        "",
        f"Generated by `python benchmarks/privacy.py` ({out['probes']} held-out faces of "
        f"{out['identities']} identities never seen in training; gallery of {out['gallery']} "
        f"photos; chance rank-1 ≈ {out['chance_rank1']:.3f}; judges: "
        f"{', '.join(out['far1_threshold'])}, the worse decides). Intervals are 95 % Wilson "
        "intervals: with this few probes they are wide, and no cell was tuned on these "
        "identities.",
        "",
        f"**Chosen default**: `{out['chosen_default']}` — the lowest worst-case rank-1 among "
        f"protections whose look stays within budget: at least {budget['psnr_db']:.0f} dB PSNR "
        "against the bare mosaic, and a logistic regression on cell colour statistics tells "
        f"it from the bare mosaic at most {budget['classifier_max']:.0%} of the time "
        "(0.5 = it cannot).",
        "",
        "## Worst case over attackers, codecs and judges (rank-1)",
        "",
        "| ratio | protection | worst attacker | worst rank-1 | 95 % CI | PSNR vs mosaic | "
        "told apart |",
        "|---|---|---|---|---|---|---|",
    ]
    for look in out["look"]:
        ratio, prot = look["ratio"], look["protection"]
        cell = [r for r in recs if r["ratio"] == ratio and r["protection"] == prot]
        worst = max(cell, key=lambda r: r["rank1"])
        lines.append(f"| {ratio:.2f} | {prot} | {worst['attacker']} ({worst['codec']}, "
                     f"{worst['recognizer']}) | {worst['rank1']:.2f} | {worst['rank1_ci']} | "
                     f"{look['psnr_vs_mosaic']:.1f} dB | {look['classifier_accuracy']:.2f} |")
    lines += ["", "## Every cell", "",
              "| ratio | protection | codec | attacker | judge | rank-1 | 95 % CI | ver@FAR1% | "
              "dist to own | PSNR rec |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['ratio']:.2f} | {r['protection']} | {r['codec']} | {r['attacker']} | "
                     f"{r['recognizer']} | {r['rank1']:.2f} | {r['rank1_ci']} | "
                     f"{r['ver_at_far1']:.2f} | {r['dist_own']:.2f} | {r['psnr_recovery']:.1f} |")
    if grid_rows:
        _grid(probes[:6], grid_rows, docs / "privacy_grid.png")
        lines += ["", "## Pictures (ratio 0.10, no codec)", "",
                  "Rows per protection: original, protected, then each attacker's recovery.", "",
                  "![grid](privacy_grid.png)"]
    page = docs / "privacy.md"
    video = ""  # the block benchmarks/privacy_video.py writes is kept
    if page.exists() and "<!-- video:" in page.read_text():
        video = "<!-- video:" + page.read_text().split("<!-- video:", 1)[1]
    page.write_text("\n".join(lines) + "\n" + ("\n" + video if video else ""))


def _grid(originals, rows, path: Path) -> None:
    def strip(t):
        return np.hstack((t.clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy())

    blocks = []
    for name, protected, recs in rows:
        parts = [strip(originals), strip(protected)] + [strip(v) for k, v in recs.items()
                                                        if k != "none"]
        labels = ["original", f"{name}"] + [k for k in recs if k != "none"]
        for img, label in zip(parts, labels):
            img = np.ascontiguousarray(img)
            cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
            blocks.append(img)
    grid = np.vstack(blocks)
    scale = 0.5
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(grid, None, fx=scale, fy=scale),
                                        cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    raise SystemExit(main())
