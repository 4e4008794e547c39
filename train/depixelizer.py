"""Train a depixelizer (the IDN, or a baseline attacker) on pixelized faces.

    python train/depixelizer.py --config train/configs/cpu.toml --set out_dir="runs/idn"

Reads top to bottom: config, data, model, loss, optimizer, loop. Resumes from
out_dir/ckpt.pt when it exists. Runs on CPU or CUDA (AMP on CUDA).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from streamguard.models.features import loss_backbone  # noqa: E402
from streamguard.models.losses import DepixWeights, depixelization_loss  # noqa: E402
from streamguard.models import create_model, model_kind  # noqa: E402
from streamguard.protect.pixelize import pixelize_regions, sample_ratio  # noqa: E402
from train.common import (  # noqa: E402
    Logger, parse_config, pick_device, resume, run_script, save_checkpoint, seed_everything,
    train_loader,
)

# -- config: every default with its reason ----------------------------------------------------
DEFAULTS = dict(
    model="idn_small",          # registry name; "idn" is the paper's width, for a GPU
    model_args={},              # constructor overrides, e.g. {stages = 3} for the ablation
    data="folder:.cache/streamguard/faces",  # train/data/build_corpus.py output, or "celeba:/data/celeba"
    size=128,                   # training image side (the paper: 256 with a 128 face region)
    ratio_strategy="infinite",  # the paper's best strategy (Table 1)
    batch_size=8,
    lr=2e-4,                    # the paper: 2e-4 for 8 epochs ...
    lr_finetune=5e-5,           # ... then 5e-5 for 2 epochs
    finetune_frac=0.2,          # last fraction of steps at lr_finetune (2 of 10 epochs)
    epochs=10.0,                # total epochs (fractions allowed); max_steps wins if set
    max_steps=0,
    time_budget_s=0,            # stop (with a checkpoint) after this many seconds; 0 = none
    loss_backbone="inception",  # perceptual/style features: inception | vgg16 | none
    vgg16_path="",              # torchvision VGG16 state dict, for the paper's exact losses
    weights=dict(pixelized=6.0, non_pixelized=1.0, perceptual=0.05, style=120.0, tv=0.1),
    device="auto",
    amp=True,                   # mixed precision on CUDA only
    seed=0,
    workers=0,
    out_dir="runs/depixelizer",
    log_every=20,
    ckpt_every=200,
)


def main(argv=None, protect=None):
    """protect: optional (pixelized, mask, boxes, blocks) -> protected images, applied to every
    batch before the attacker sees it (how benchmarks/privacy.py trains an adaptive attacker)."""
    cfg = parse_config(DEFAULTS, "depixelizer", argv)
    if model_kind(cfg["model"]) != "attacker":
        sys.exit(f"{cfg['model']} is not a depixelizer")
    out = Path(cfg["out_dir"])
    gen = seed_everything(cfg["seed"])
    device = pick_device(cfg["device"])
    use_amp = cfg["amp"] and device.type == "cuda"

    # -- data --------------------------------------------------------------------------------
    data, loader, steps_per_epoch, total = train_loader(cfg, gen)

    # -- model, loss, optimizer --------------------------------------------------------------
    model = create_model(cfg["model"], **cfg["model_args"]).to(device)
    backbone = loss_backbone(cfg["loss_backbone"], cfg["vgg16_path"] or None)
    backbone = backbone.to(device) if backbone is not None else None
    weights = DepixWeights(**cfg["weights"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ckpt_path = out / "ckpt.pt"
    step, prior_s = resume(ckpt_path, model, opt, device)

    def checkpoint(metrics):
        save_checkpoint(
            ckpt_path, model=model.state_dict(), optimizer=opt.state_dict(), step=step,
            model_args=model.model_args, config=cfg, metrics=metrics,
            loss_backbone=backbone.name if backbone is not None else "none",
            data=cfg["data"], train_images=len(data), wall_s=time.time() - t_start + prior_s,
        )

    log = Logger(out)
    t_start = time.time()
    metrics = {}

    # -- loop ----------------------------------------------------------------------------------
    model.train()
    while step < total:
        data.set_epoch(step // steps_per_epoch)
        for gt, boxes in loader:
            if step >= total:
                break
            # the schedule follows steps, or wall time when a time budget ends the run first
            progress = step / total
            if cfg["time_budget_s"]:
                progress = max(progress, (time.time() - t_start + prior_s) / cfg["time_budget_s"])
            lr = cfg["lr"] if progress < 1 - cfg["finetune_frac"] else cfg["lr_finetune"]
            for group in opt.param_groups:
                group["lr"] = lr
            ratio = sample_ratio(cfg["ratio_strategy"], gen)
            pixelized, mask, blocks = pixelize_regions(gt, boxes, ratio, data.face_fraction)
            if protect is not None:
                with torch.no_grad():
                    pixelized = protect(pixelized, mask, boxes, blocks)
            gt, pixelized, mask = gt.to(device), pixelized.to(device), mask.to(device)
            with torch.autocast(device.type, enabled=use_amp):
                pred = model(pixelized, mask)
            loss, terms = depixelization_loss(pred.float(), gt, mask, backbone, weights)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            if step % cfg["log_every"] == 0 or step == total:
                metrics = {"loss": float(loss.detach()), "lr": lr, "ratio": round(ratio, 3), **terms}
                log.log(step, **metrics)
            if step % cfg["ckpt_every"] == 0:
                checkpoint(metrics)
            if cfg["time_budget_s"] and time.time() - t_start + prior_s > cfg["time_budget_s"]:
                total = step
                break
    checkpoint(metrics)
    print(f"done: {step} steps, checkpoint {ckpt_path}")
    return ckpt_path


if __name__ == "__main__":
    run_script(main)
