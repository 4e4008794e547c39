"""Train a perturbation generator (pixel-wise or block-wise) against a frozen depixelizer.

    python train/generator.py --set attacker_ckpt="runs/idn/ckpt.pt" --set model="blockwise"

The semi-whitebox setting of the paper (§4): the attacker's weights are fixed and only the
generator learns, from L_adv = λ1 L1 + λ2 L2 (Eq. 14; normalization in
streamguard/models/losses.py). Baseline attackers (unet, srres) are refused as training
attackers: they are kept unseen for transfer tests.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from streamguard.models.losses import (  # noqa: E402
    adversarial_loss, cell_cost, identity_loss, look_cost, smoothing_attacks,
)
from streamguard.models import create_model, model_kind  # noqa: E402
from streamguard.protect.pixelize import pixelize_regions, sample_ratio  # noqa: E402
from train.common import (  # noqa: E402
    Logger, load_checkpoint, parse_config, run_script, pick_device, resume, save_checkpoint,
    seed_everything, train_loader,
)

HELD_OUT_ATTACKERS = ("unet", "srres")  # never trained against: transfer tests only

DEFAULTS = dict(
    model="blockwise",          # "pixelwise" | "blockwise" (or their _tiny variants)
    model_args={},              # e.g. {eps = 0.047}
    attacker_ckpt="runs/depixelizer/ckpt.pt",  # a trained IDN checkpoint, or "shipped:NAME"
    data="folder:.cache/streamguard/faces",
    size=128,
    ratio_strategy="infinite",
    batch_size=8,
    lr=1e-4,                    # the paper: 1e-4 ...
    epochs=4.0,                 # ... 2 epochs pixel-wise, 4 block-wise
    max_steps=0,
    time_budget_s=0,
    lambda1=1.0,
    lambda2=0.0,                # 0 = the paper's value for the model: 3 pixel-wise, 8 block-wise
    normalization="cell",       # "cell" (ours, see losses.py) or "pixel" (per-pixel, for comparison)
    objective="paper",          # "paper": Eq. 14 vs the IDN; "identity": push the identity of what
                                # bicubic, Gaussian and the IDN recover away from the original's
    lambda_id=1.0,              # identity objective: weight of the identity term (λ2 prices δ)
    lambda_look=0.0,            # price of looking unlike a bare mosaic (losses.look_cost):
                                # cell statistics and chroma of δ; 0 = not priced
    device="auto",
    amp=True,
    seed=0,
    workers=0,
    out_dir="runs/generator",
    log_every=20,
    ckpt_every=200,
)


def perturb(generator, pixelized, mask, boxes, blocks):
    """δ (B, 3, H, W) for a batch; block-wise δ is built region by region on its own grid."""
    if not hasattr(generator, "cell_delta"):
        return generator(pixelized, mask)
    delta = torch.zeros_like(pixelized)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        delta[i:i + 1, :, y0:y1, x0:x1] = generator(pixelized[i:i + 1, :, y0:y1, x0:x1],
                                                    int(blocks[i]))
    return delta


def attacker_checkpoint(source: str, device) -> dict:
    """A training checkpoint path, or "shipped:NAME": the weights shipped in the package."""
    if source.startswith("shipped:"):
        from streamguard.models.weights import load_shipped

        net = load_shipped(source.split(":", 1)[1]).float()
        return {"model": net.state_dict(), "model_args": dict(net.model_args)}
    return load_checkpoint(Path(source), device)


def _affine_theta(m, size: int) -> torch.Tensor:
    """affine_grid's normalized theta for sampling a 112 x 112 output from a size x size input
    given the pixel-space 2 x 3 affine m (input -> output)."""
    import numpy as np

    full = np.vstack([m, [0, 0, 1]])
    inv = np.linalg.inv(full)  # output pixel -> input pixel

    def norm(n):  # pixel -> [-1, 1] (align_corners=False)
        return np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])

    def denorm(n):
        return np.linalg.inv(norm(n))

    theta = norm(size) @ inv @ denorm(112)
    return torch.tensor(theta[:2], dtype=torch.float32)[None]


def main(argv=None):
    cfg = parse_config(DEFAULTS, "generator", argv)
    if model_kind(cfg["model"]) != "generator":
        sys.exit(f"{cfg['model']} is not a generator")
    out = Path(cfg["out_dir"])
    gen = seed_everything(cfg["seed"])
    device = pick_device(cfg["device"])
    use_amp = cfg["amp"] and device.type == "cuda"
    blockwise = cfg["model"].startswith("blockwise")
    lambda2 = cfg["lambda2"] or (8.0 if blockwise else 3.0)

    # -- the frozen attacker -------------------------------------------------------------------
    a_ckpt = attacker_checkpoint(cfg["attacker_ckpt"], device)
    a_args = dict(a_ckpt["model_args"])
    a_name = a_args.pop("name")
    if a_name.split("_")[0] in HELD_OUT_ATTACKERS:
        sys.exit(f"{a_name} is a held-out attacker: generators must never train against it")
    attacker = create_model(a_name, **a_args).to(device)
    attacker.load_state_dict(a_ckpt["model"])
    attacker.eval().requires_grad_(False)

    embed = None
    if cfg["objective"] == "identity":
        # corpus crops are aligned: one fixed affine takes them to the identity net's input
        from streamguard.models.identity import OnnxIdentityNet
        from train.data.build_corpus import crop_to_arcface

        net = OnnxIdentityNet().to(device)
        theta = _affine_theta(crop_to_arcface(), cfg["size"]).to(device)

        def embed(images):
            grid = torch.nn.functional.affine_grid(theta.expand(len(images), 2, 3),
                                                   (len(images), 3, 112, 112), align_corners=False)
            return net(torch.nn.functional.grid_sample(images, grid, align_corners=False))
    elif cfg["objective"] != "paper":
        sys.exit(f"objective must be paper or identity, got '{cfg['objective']}'")

    # -- data, generator, optimizer ----------------------------------------------------------
    data, loader, steps_per_epoch, total = train_loader(cfg, gen)
    model = create_model(cfg["model"], **cfg["model_args"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
    ckpt_path = out / "ckpt.pt"
    step, prior_s = resume(ckpt_path, model, opt, device)
    log = Logger(out)
    t_start = time.time()
    metrics = {}

    def checkpoint():
        save_checkpoint(
            ckpt_path, model=model.state_dict(), optimizer=opt.state_dict(), step=step,
            model_args=model.model_args, config=cfg, metrics=metrics,
            attacker=a_ckpt["model_args"], lambda1=cfg["lambda1"], lambda2=lambda2,
            normalization=cfg["normalization"], objective=cfg["objective"],
            lambda_look=cfg["lambda_look"],
            data=cfg["data"], train_images=len(data), wall_s=time.time() - t_start + prior_s,
        )

    # -- loop ------------------------------------------------------------------------------------
    model.train()
    while step < total:
        data.set_epoch(step // steps_per_epoch)
        for gt, boxes in loader:
            if step >= total:
                break
            ratio = sample_ratio(cfg["ratio_strategy"], gen)
            pixelized, mask, blocks = pixelize_regions(gt, boxes, ratio, data.face_fraction)
            pixelized, mask = pixelized.to(device), mask.to(device)
            with torch.autocast(device.type, enabled=use_amp):
                delta = perturb(model, pixelized, mask, boxes, blocks)
                protected = (pixelized + delta).clamp(0, 1)
                recovered = attacker(protected, mask)
            if embed is None:
                loss, terms = adversarial_loss(recovered.float(), pixelized, delta.float(), boxes,
                                               blocks, cfg["lambda1"], lambda2,
                                               cfg["normalization"])
            else:
                with torch.no_grad():
                    target = embed(gt.to(device))
                attacks = {"idn": recovered.float(), **smoothing_attacks(protected, boxes, blocks)}
                id_loss, terms = identity_loss(attacks, target, embed)
                budget = cell_cost(delta, boxes, blocks).mean() / pixelized[0].numel()
                loss = cfg["lambda_id"] * id_loss + lambda2 * budget
                terms["l2"] = float(budget)
            if cfg["lambda_look"]:
                look, look_terms = look_cost(pixelized, delta.float(), boxes, blocks)
                loss = loss + cfg["lambda_look"] * look.mean()
                terms.update(look_terms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg["log_every"] == 0 or step == total:
                metrics = {"loss": float(loss.detach()), "ratio": round(ratio, 3), **terms,
                           "delta_mean": float(delta.abs().sum() / (1 - mask).sum() / 3),
                           "delta_max": float(delta.abs().max())}
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
