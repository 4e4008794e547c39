"""Turn a training checkpoint into shipped weights: fp16 safetensors + a JSON card in
streamguard/weights/, replacing any earlier version of the same name.

    python train/ship.py runs/blockwise/ckpt.pt blockwise_paper --note "..."
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamguard.models.weights import ship  # noqa: E402
from train.common import load_checkpoint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("name")
    ap.add_argument("--note", default="", help="limits and caveats for the card")
    ap.add_argument("--machine", default="2-core CPU VM (no GPU)",
                    help="where it was trained, for the card")
    args = ap.parse_args(argv)
    ckpt = load_checkpoint(Path(args.checkpoint))
    cfg = ckpt.get("config", {})
    info = {
        "name": args.name,
        "trained_steps": ckpt["step"],
        "wall_time_s": round(ckpt.get("wall_s", 0.0), 1),
        "data": ckpt.get("data"),
        "train_images": ckpt.get("train_images"),
        "batch_size": cfg.get("batch_size"),
        "image_size": cfg.get("size"),
        "ratio_strategy": cfg.get("ratio_strategy"),
        "loss_backbone": ckpt.get("loss_backbone"),
        "objective": ckpt.get("objective") or cfg.get("objective"),
        "attacker": ckpt.get("attacker"),
        "lambda1": ckpt.get("lambda1"), "lambda2": ckpt.get("lambda2"),
        "normalization": ckpt.get("normalization"),
        "lambda_look": ckpt.get("lambda_look") or cfg.get("lambda_look") or None,
        "final_train_metrics": ckpt.get("metrics"),
        "machine": args.machine,
        "limits": args.note,
    }
    path = ship(ckpt["model"], dict(ckpt["model_args"]), args.name,
                {k: v for k, v in info.items() if v is not None})
    print(f"shipped {path} ({path.stat().st_size / 1e6:.2f} MB)")
    write_model_card(path.parent)
    return 0


def write_model_card(folder: Path) -> Path:
    """MODEL_CARD.md: every shipped model's card as a readable page."""
    import json

    lines = ["# Shipped weights", "",
             "Written by `train/ship.py` from each model's JSON card. All were trained on a "
             "2-core CPU VM on the registry face corpus (`train/data/build_corpus.py`: ~120 "
             "training faces of ~65 identities; test identities never seen). That corpus is "
             "tiny: these models memorize more than they generalize. Use them to exercise the "
             "pipeline and as a baseline; retrain on CelebA with the same scripts for real use. "
             "Identity results: docs/privacy.md.", ""]
    for side in sorted(folder.glob("*.json")):
        c = json.loads(side.read_text())
        lines += [f"## {c['name']}", "",
                  f"- architecture: `{c['model_args']}`",
                  f"- file: `{side.stem}.safetensors`, {c['bytes'] / 1e6:.2f} MB, {c['format']}, "
                  f"sha256 `{c['sha256']}`",
                  f"- training: {c.get('trained_steps')} steps, batch {c.get('batch_size')}, "
                  f"{c.get('image_size')} px, {c.get('wall_time_s', 0) / 60:.0f} min on "
                  f"{c.get('machine')}; data `{c.get('data')}` ({c.get('train_images')} images); "
                  f"ratio strategy {c.get('ratio_strategy')}"]
        if c.get("loss_backbone"):
            lines.append(f"- perceptual/style backbone: {c['loss_backbone']}")
        if c.get("objective"):
            lines.append(f"- objective: {c['objective']}; λ1 {c.get('lambda1')}, λ2 "
                         f"{c.get('lambda2')}, δ priced per {c.get('normalization')}"
                         + (f", look priced at {c['lambda_look']} (losses.look_cost)"
                            if c.get("lambda_look") else "")
                         + f"; attacker `{c.get('attacker')}`")
        if c.get("final_train_metrics"):
            m = {k: (round(v, 4) if isinstance(v, float) else v)
                 for k, v in c["final_train_metrics"].items()}
            lines.append(f"- last training metrics: {m}")
        lines += [f"- limits: {c.get('limits') or '-'}", ""]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
