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
        "final_train_metrics": ckpt.get("metrics"),
        "machine": "2-core CPU VM (no GPU)",
        "limits": args.note,
    }
    path = ship(ckpt["model"], dict(ckpt["model_args"]), args.name,
                {k: v for k, v in info.items() if v is not None})
    print(f"shipped {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
