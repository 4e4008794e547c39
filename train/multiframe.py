"""Train the multi-frame depixelizer: K registered frames of a pixelized face in, the face out.

    python train/multiframe.py --set out_dir="runs/multiframe" --set time_budget_s=900

Reads top to bottom: config, the simulated video, model, loop. Resumes from out_dir/ckpt.pt.

Training clips are simulated from the corpus's training identities the way streamguard's video
output looks to an attacker who registers frames on the face: the face sits at a new sub-cell
offset on each frame. "frame" views mosaic each frame on a grid that does not follow those
offsets (the grid placed anew per frame: every frame samples another phase of the face);
"held" views paint one mosaic, sampled once, at each frame's offset (the track lock). Batches mix
both, so the attacker is the best it can be against either.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from streamguard.models import create_model  # noqa: E402
from streamguard.protect.pixelize import mosaic_tensor  # noqa: E402
from train.common import (  # noqa: E402
    Logger, parse_config, pick_device, resume, run_script, save_checkpoint, seed_everything,
    train_loader,
)

DEFAULTS = dict(
    model="multiframe",
    model_args={},
    data="folder:.cache/streamguard/faces",
    size=128,                  # corpus layout: face box = the central half, region = 3/4
    frames=8,                  # K per training clip (the network takes any K)
    blocks=[8, 10],            # blocks across the face, sampled per batch
    held_share=0.5,            # share of batches with held (track-locked) mosaics
    batch_size=8,
    lr=3e-4,
    epochs=1000.0,
    max_steps=0,
    time_budget_s=0,
    device="auto",
    seed=0,
    workers=0,
    augment=True,
    out_dir="runs/multiframe",
    log_every=25,
    ckpt_every=100,
)


# -- the simulated video ------------------------------------------------------------------------

def shift(images: torch.Tensor, dxy: torch.Tensor) -> torch.Tensor:
    """Move each image's content by (dx, dy) pixels (bilinear, edges repeated)."""
    b, _, h, w = images.shape
    theta = torch.zeros(b, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * dxy[:, 0] / w
    theta[:, 1, 2] = -2 * dxy[:, 1] / h
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def region_mask(size: int, batch: int) -> tuple[torch.Tensor, int, int]:
    """Mask (1 = not pixelized) of the corpus's protected region, and its corners."""
    lo, hi = size // 8, size - size // 8
    mask = torch.ones(batch, 1, size, size)
    mask[..., lo:hi, lo:hi] = 0
    return mask, lo, hi


def simulate(gt: torch.Tensor, k: int, blocks: int, held: bool,
             gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K registered frames (B, K, 3, H, W) of each face, and the region mask."""
    b, _, size, _ = gt.shape
    mask, lo, hi = region_mask(size, b)
    s = max(1, round(size / 2 / blocks))  # the face box is half the crop
    offsets = torch.rand(k, b, 2, generator=gen) * s  # sub-cell phase of each frame

    def mosaic(x):
        out = x.clone()
        out[..., lo:hi, lo:hi] = mosaic_tensor(x[..., lo:hi, lo:hi], s)
        return out

    views = []
    first = mosaic(shift(gt, offsets[0]))
    for i in range(k):
        painted = shift(first, offsets[i] - offsets[0]) if held else mosaic(shift(gt, offsets[i]))
        views.append(shift(painted, -offsets[i]))  # registered on the face
    return torch.stack(views, 1).clamp(0, 1), mask


# -- the run ------------------------------------------------------------------------------------

def main(argv=None):
    cfg = parse_config(DEFAULTS, "multiframe", argv)
    out = Path(cfg["out_dir"])
    gen = seed_everything(cfg["seed"])
    device = pick_device(cfg["device"])
    data, loader, steps_per_epoch, total = train_loader(cfg, gen)
    model = create_model(cfg["model"], **cfg["model_args"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    ckpt_path = out / "ckpt.pt"
    step, prior_s = resume(ckpt_path, model, opt, device)
    log = Logger(out)
    t_start = time.time()
    metrics: dict = {}

    def checkpoint():
        save_checkpoint(ckpt_path, model=model.state_dict(), optimizer=opt.state_dict(),
                        step=step, model_args=model.model_args, config=cfg, metrics=metrics,
                        data=cfg["data"], train_images=len(data),
                        wall_s=time.time() - t_start + prior_s)

    model.train()
    while step < total:
        data.set_epoch(step // steps_per_epoch)
        for gt, _ in loader:
            if step >= total:
                break
            blocks = cfg["blocks"][int(torch.randint(len(cfg["blocks"]), (1,), generator=gen))]
            held = bool(torch.rand((), generator=gen) < cfg["held_share"])
            views, mask = simulate(gt, cfg["frames"], blocks, held, gen)
            views, mask, gt = views.to(device), mask.to(device), gt.to(device)
            pred = model(views, mask)
            inside = 1 - mask
            loss = (torch.abs(pred - gt) * inside).sum() / (inside.sum() * 3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg["log_every"] == 0 or step == total:
                base = (torch.abs(views.mean(1) - gt) * inside).sum() / (inside.sum() * 3)
                metrics = {"l1_region": float(loss.detach()), "l1_mean_frame": float(base),
                           "blocks": blocks, "held": int(held)}
                log.log(step, **metrics)
            if step % cfg["ckpt_every"] == 0:
                checkpoint()
            if cfg["time_budget_s"] and time.time() - t_start + prior_s > cfg["time_budget_s"]:
                total = step
                break
    checkpoint()
    print(f"done: {step} steps, checkpoint {ckpt_path}")
    return ckpt_path


if __name__ == "__main__":
    run_script(main)
