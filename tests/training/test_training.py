"""Training end to end on a handful of real faces, small enough for CI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from train import depixelizer, generator
from train.common import load_checkpoint
from train.datasets import CelebA, FaceFolder, open_dataset


@pytest.fixture(scope="module")
def face_folder(crops, tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    (root / "crops").mkdir()
    rows = []
    for i, crop in enumerate(crops):
        rel = f"crops/{i}.png"
        cv2.imwrite(str(root / rel), cv2.cvtColor(cv2.resize(crop, (64, 64)), cv2.COLOR_RGB2BGR))
        rows.append(f"{rel}\t{'test' if i == len(crops) - 1 else 'train'}")
    (root / "split.txt").write_text("\n".join(rows) + "\n")
    return root


def _losses(out_dir: Path) -> list[float]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def depix_args(folder, out, steps, **extra):
    args = {"model": '"idn_tiny"', "data": f'"folder:{folder}"', "size": 64, "batch_size": 4,
            "max_steps": steps, "log_every": 10, "ckpt_every": 50, "loss_backbone": '"none"',
            "lr": 2e-3, "lr_finetune": 1e-3, "out_dir": f'"{out}"', "ratio_strategy": '"single"',
            **extra}
    return [x for k, v in args.items() for x in ("--set", f"{k}={v}")]


def test_a_few_hundred_steps_teach_the_idn_to_beat_the_mosaic(face_folder, tmp_path):
    """The IDN starts as the identity on the mosaic (zero residual); 300 steps on a handful of
    faces must lower the loss and recover those faces better than the mosaic shows them."""
    from streamguard.models import create_model
    from streamguard.protect.pixelize import pixelize_regions

    out = tmp_path / "idn"
    depixelizer.main(depix_args(face_folder, out, 300))
    losses = _losses(out)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    ckpt = load_checkpoint(out / "ckpt.pt")
    args = dict(ckpt["model_args"])
    model = create_model(args.pop("name"), **args)
    model.load_state_dict(ckpt["model"])
    data = FaceFolder(face_folder, "train", size=64)
    images = torch.stack([data[i][0] for i in range(len(data))])
    boxes = torch.stack([data[i][1] for i in range(len(data))])
    pix, mask, _ = pixelize_regions(images, boxes, 0.10, data.face_fraction)
    with torch.no_grad():
        rec = model.eval()(pix, mask)
    err_rec = float(((rec - images).abs() * (1 - mask)).mean())
    err_mosaic = float(((pix - images).abs() * (1 - mask)).mean())
    assert err_rec < 0.95 * err_mosaic, (err_rec, err_mosaic)


def test_checkpoints_describe_themselves_load_safely_and_resume(face_folder, tmp_path, capsys):
    out = tmp_path / "resume"
    depixelizer.main(depix_args(face_folder, out, 20))
    ckpt = load_checkpoint(out / "ckpt.pt")  # weights_only=True
    assert ckpt["step"] == 20
    assert ckpt["model_args"]["name"] == "idn_tiny"
    assert ckpt["loss_backbone"] == "none" and ckpt["data"].startswith("folder:")
    assert ckpt["config"]["size"] == 64
    depixelizer.main(depix_args(face_folder, out, 30))
    assert "resumed from" in capsys.readouterr().out
    assert load_checkpoint(out / "ckpt.pt")["step"] == 30


def test_inception_perceptual_and_style_losses_train(face_folder, tmp_path):
    out = tmp_path / "percep"
    depixelizer.main(depix_args(face_folder, out, 12, loss_backbone='"inception"', size=96,
                                log_every=4))
    rec = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["perceptual"] > 0 and r["style"] >= 0 for r in rec)
    assert load_checkpoint(out / "ckpt.pt")["loss_backbone"] == "inception_v3_tf_fid"


@pytest.fixture(scope="module")
def trained_attacker(face_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("attacker")
    depixelizer.main(depix_args(face_folder, out, 150))
    return out / "ckpt.pt"


def _gen_args(folder, attacker, out, model, steps, **extra):
    # 128 px: cells of ~5 px (13 across a 64 px face), as in the shipped models' training
    args = {"model": f'"{model}"', "attacker_ckpt": f'"{attacker}"', "data": f'"folder:{folder}"',
            "size": 128, "batch_size": 4, "max_steps": steps, "log_every": 10, "lr": 2e-3,
            "out_dir": f'"{out}"', "ratio_strategy": '"single"', **extra}
    return [x for k, v in args.items() for x in ("--set", f"{k}={v}")]


def _final_delta(out: Path) -> float:
    rec = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([r["delta_mean"] for r in rec[-3:]]))


def test_paper_weights_give_a_nontrivial_blockwise_delta_under_our_normalization(
        face_folder, trained_attacker, tmp_path):
    """λ1/λ2 = 1/8: priced per mosaic cell δ grows; priced per pixel it collapses toward 0."""
    eps = 12 / 255
    ours, per_pixel = tmp_path / "cell", tmp_path / "pixel"
    generator.main(_gen_args(face_folder, trained_attacker, ours, "blockwise_tiny", 120))
    generator.main(_gen_args(face_folder, trained_attacker, per_pixel, "blockwise_tiny", 120,
                             normalization='"pixel"'))
    d_ours, d_pixel = _final_delta(ours), _final_delta(per_pixel)
    assert d_ours > 0.03 * eps, d_ours  # a collapsed δ sits near 1e-5
    assert d_pixel < 0.2 * d_ours, (d_pixel, d_ours)


def test_paper_weights_give_a_nontrivial_pixelwise_delta(face_folder, trained_attacker, tmp_path):
    """λ1/λ2 = 1/3, the same contrast for the pixel-wise generator."""
    ours, per_pixel = tmp_path / "cell", tmp_path / "pixel"
    generator.main(_gen_args(face_folder, trained_attacker, ours, "pixelwise_tiny", 120))
    generator.main(_gen_args(face_folder, trained_attacker, per_pixel, "pixelwise_tiny", 120,
                             normalization='"pixel"'))
    d_ours, d_pixel = _final_delta(ours), _final_delta(per_pixel)
    assert d_ours > 0.03 * 12 / 255, d_ours
    assert d_pixel < 0.2 * d_ours, (d_pixel, d_ours)


def _look_of(ckpt_path: Path, folder: Path) -> float:
    """The look cost of a trained block-wise generator's δ on the held-out crop."""
    from streamguard.models import create_model
    from streamguard.models.losses import look_cost
    from streamguard.protect.pixelize import pixelize_regions
    from train.generator import perturb

    ckpt = load_checkpoint(ckpt_path)
    args = dict(ckpt["model_args"])
    net = create_model(args.pop("name"), **args)
    net.load_state_dict(ckpt["model"])
    data = open_dataset(f"folder:{folder}", None, 128, augment=False, seed=0)
    gt, boxes = map(torch.stack, zip(*(data[i] for i in range(len(data)))))
    pix, mask, blocks = pixelize_regions(gt, boxes, 0.10, data.face_fraction)
    with torch.no_grad():
        return float(look_cost(pix, perturb(net, pix, mask, boxes, blocks), boxes, blocks)[0].mean())


def test_pricing_the_look_keeps_the_generators_mosaic_looking_like_a_mosaic(
        face_folder, trained_attacker, tmp_path):
    """The same training with the look priced (lambda_look) gives a δ whose cells a viewer's
    statistics place much closer to the bare mosaic's."""
    free, priced = tmp_path / "free", tmp_path / "priced"
    generator.main(_gen_args(face_folder, trained_attacker, free, "blockwise_tiny", 80))
    generator.main(_gen_args(face_folder, trained_attacker, priced, "blockwise_tiny", 80,
                             lambda_look=200.0))
    look_free = _look_of(free / "ckpt.pt", face_folder)
    look_priced = _look_of(priced / "ckpt.pt", face_folder)
    assert look_free > 1e-3, look_free  # the unpriced δ is visible to the statistics
    assert look_priced < 0.5 * look_free, (look_priced, look_free)


def test_look_cost_sees_a_tint_and_striping_but_not_a_bare_mosaic():
    from streamguard.models.losses import look_cost

    torch.manual_seed(0)
    cells = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    pix = cells.repeat_interleave(8, -2).repeat_interleave(8, -1)  # 64 x 64, cells of 8
    boxes, blocks = torch.tensor([[0, 0, 64, 64]]), torch.tensor([8])
    eps = 16 / 255
    assert float(look_cost(pix, torch.zeros_like(pix), boxes, blocks)[0]) == 0.0
    red = torch.zeros_like(pix)
    red[:, 0] = eps  # a red tint
    stripes = torch.zeros_like(pix)
    for k in range(8):  # every other row of cells brighter: horizontal striping
        stripes[:, :, k::16] = eps
    grey = torch.full_like(pix, eps / 4)  # a slight overall brightening, no chroma, no texture
    cost = {n: float(look_cost(pix, d, boxes, blocks)[0]) for n, d in
            (("red", red), ("stripes", stripes), ("grey", grey))}
    assert cost["red"] > 2 * cost["grey"] and cost["stripes"] > 2 * cost["grey"], cost


def test_generators_refuse_held_out_attackers(face_folder, tmp_path):
    out = tmp_path / "unet"
    depixelizer.main(depix_args(face_folder, out, 2, model='"unet_tiny"'))
    with pytest.raises(SystemExit, match="held-out"):
        generator.main(_gen_args(face_folder, out / "ckpt.pt", tmp_path / "g", "blockwise_tiny", 2))


def _write_celeba(root: Path, n: int = 6) -> None:
    """A tiny fixture laid out exactly like CelebA."""
    rng = np.random.default_rng(0)
    (root / "img_align_celeba").mkdir(parents=True)
    (root / "img_celeba").mkdir()
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        cv2.imwrite(str(root / "img_align_celeba" / name),
                    rng.integers(0, 255, (218, 178, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "img_celeba" / name),
                    rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    parts = [0, 0, 0, 0, 1, 2]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{nm} {p}\n" for nm, p in zip(names, parts)))
    bbox = "".join(f"{nm}    95  71 120 160\n" for nm in names)
    (root / "list_bbox_celeba.txt").write_text(f"{n}\nimage_id x_1 y_1 width height\n{bbox}")


def test_celeba_loader_reads_the_standard_layout(tmp_path):
    _write_celeba(tmp_path)
    train = CelebA(tmp_path, "train")
    assert len(train) == 4 and len(CelebA(tmp_path, "val")) == 1
    img, box = train[0]
    assert img.shape == (3, 256, 256) and 0 <= img.min() and img.max() <= 1
    x0, y0, x1, y1 = box.tolist()
    assert x1 - x0 == y1 - y0 == 128  # the paper's 128 x 128 face mask at 256
    wild = CelebA(tmp_path, "test", variant="wild")
    img, box = wild[0]
    assert img.shape == (3, 256, 256) and (box[2] - box[0]) == 128
    assert len(open_dataset(f"celeba:{tmp_path}", "train", 256, False, 0)) == 4
    with pytest.raises(FileNotFoundError, match="CelebA"):
        CelebA(tmp_path / "nope", "train")


def test_face_folder_honours_the_identity_split(face_folder):
    train = FaceFolder(face_folder, "train", size=64)
    test = FaceFolder(face_folder, "test", size=64)
    assert len(test) == 1 and len(train) >= 4
    assert not set(train.files) & set(test.files)
    img, box = train[0]
    assert img.shape == (3, 64, 64) and box.tolist() == [8, 8, 56, 56]


def test_the_multiframe_attacker_learns_from_frames_on_new_grids(face_folder, tmp_path):
    """A hundred steps on simulated clips (each frame mosaicked at another sub-cell phase) take
    it below the plain average of the registered frames (where its zero-ish residual starts);
    the checkpoint ships as fp16 safetensors and loads back."""
    from streamguard.models.weights import load_shipped, ship
    from train import multiframe

    out = tmp_path / "mf"
    args = {"model": '"multiframe_tiny"', "data": f'"folder:{face_folder}"', "size": 64,
            "batch_size": 4, "frames": 4, "max_steps": 120, "log_every": 10, "lr": 3e-3,
            "held_share": 0.0, "out_dir": f'"{out}"'}
    multiframe.main([x for k, v in args.items() for x in ("--set", f"{k}={v}")])
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    ratio = [ln["l1_region"] / ln["l1_mean_frame"] for ln in lines]  # batches vary: relative
    assert np.mean(ratio[-4:]) < 0.96 and np.mean(ratio[-4:]) < np.mean(ratio[:2]), ratio
    ckpt = load_checkpoint(out / "ckpt.pt")
    ship(ckpt["model"], dict(ckpt["model_args"]), "mf_test", {"name": "mf_test"},
         folder=tmp_path / "weights")
    model = load_shipped("mf_test", folder=tmp_path / "weights")
    views, mask = multiframe.simulate(torch.rand(2, 3, 64, 64), 3, 8, held=False)
    assert model(views, mask).shape == (2, 3, 64, 64)


def test_held_views_show_one_mosaic_and_frame_views_many():
    """The simulator: registered held views are one mosaic moved about (their cells repeat
    the first view's colours); frame views each sample the face anew."""
    from train.multiframe import simulate

    torch.manual_seed(0)
    face = torch.rand(1, 3, 64, 64)
    face = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16), size=64, mode="bicubic")
    held, mask = simulate(face.clamp(0, 1), 6, 8, held=True)
    fresh, _ = simulate(face.clamp(0, 1), 6, 8, held=False)
    assert mask[0, 0, 32, 32] == 0 and mask[0, 0, 2, 2] == 1
    assert held.shape == fresh.shape == (1, 6, 3, 64, 64)
    # averaging fresh views gets closer to the face than one view; held views do not
    err = lambda v: float((v - face).abs()[..., 12:52, 12:52].mean())  # noqa: E731
    assert err(fresh.mean(1)) < err(fresh[:, 0])
    assert err(held.mean(1)) > err(fresh.mean(1))
