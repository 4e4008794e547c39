"""Fine-tune a depixelizer on a protection's outputs: the adaptive attacker of the identity
scorecard (someone who can run streamguard and train on what it outputs).

    python train/adaptive.py --protection shipped:blockwise_identity \
        --out runs/adaptive_identity-block --steps 300 [--time-budget-s 120] [--device auto]

--protection: "mosaic" (no generator), "shipped:NAME" (weights in streamguard/weights/) or
"ckpt:PATH" (a train/generator.py checkpoint). The attacker starts from the shipped IDN and
trains on (protected, original) pairs of the training identities only. Resumes from
OUT/ckpt.pt; a run that already has --steps steps is returned as it is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from train.common import load_checkpoint, run_script, save_checkpoint  # noqa: E402

CORPUS = "folder:.cache/streamguard/faces"


def load_generator(source: str) -> torch.nn.Module | None:
    """The generator a protection names (None for the bare mosaic), in eval mode on the CPU."""
    if source == "mosaic":
        return None
    kind, _, name = source.partition(":")
    if kind == "shipped":
        from streamguard.models.weights import load_shipped

        return load_shipped(name).float()
    if kind == "ckpt":
        from streamguard.models import create_model

        ckpt = load_checkpoint(Path(name))
        args = dict(ckpt["model_args"])
        model = create_model(args.pop("name"), **args)
        model.load_state_dict(ckpt["model"])
        return model.float().eval()
    raise SystemExit(f"error: --protection must be mosaic, shipped:NAME or ckpt:PATH, got '{source}'")


def protection(source: str):
    """(pixelized, mask, boxes, blocks) -> protected images, for depixelizer.main's hook."""
    from train.generator import perturb

    generator = load_generator(source)

    @torch.no_grad()
    def protect(pix, mask, boxes, blocks):
        if generator is None:
            return pix
        return (pix + perturb(generator, pix, mask, boxes, blocks)).clamp(0, 1)

    return protect


def finetune(protect, out: Path, steps: int, time_budget_s: float = 0, device: str = "auto",
             batch_size: int = 8, base: str = "idn_small") -> Path:
    """The shipped `base` attacker fine-tuned on `protect`'s outputs; returns its checkpoint."""
    from streamguard.models.weights import load_shipped
    from train import depixelizer

    path = out / "ckpt.pt"
    if path.exists() and load_checkpoint(path)["step"] >= steps:
        return path
    if not path.exists():  # start from the shipped attacker; depixelizer.main resumes from it
        net = load_shipped(base).float()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        save_checkpoint(path, model=net.state_dict(), optimizer=opt.state_dict(), step=0,
                        model_args=net.model_args)
    depixelizer.main([
        "--set", f'data="{CORPUS}"', "--set", f"max_steps={steps}", "--set", "log_every=50",
        "--set", f'out_dir="{out}"', "--set", f'model="{base}"', "--set", f"batch_size={batch_size}",
        "--set", 'loss_backbone="none"', "--set", "lr=1e-4", "--set", "lr_finetune=5e-5",
        "--set", "ckpt_every=500", "--set", 'ratio_strategy="wide"',
        "--set", f"time_budget_s={time_budget_s}", "--set", f'device="{device}"',
    ], protect=protect)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protection", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--time-budget-s", type=float, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    path = finetune(protection(args.protection), Path(args.out), args.steps, args.time_budget_s,
                    args.device, args.batch_size)
    print(f"adaptive attacker: {path}")


if __name__ == "__main__":
    run_script(main)
