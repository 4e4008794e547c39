"""Face datasets for training and evaluation: CelebA in its standard layout, or any folder.

Every sample is `(image (3, S, S) float in [0, 1], box (4,) long)`: the box is the region to
pixelize. Pixelization itself happens in the training loop with the shared operator
(`streamguard.protect.pixelize.pixelize_regions`), one ratio per batch.

- `CelebA(root, split, variant="aligned")`: `img_align_celeba/` + `list_eval_partition.txt`
  (0 train, 1 val, 2 test: the original split, 162,770 / 19,867 / 19,962 images). Aligned faces
  sit at a fixed place, so the image is resized to S x S and the region is the central face box
  (128 x 128 at S = 256, the paper's mask). `variant="wild"` reads `img_celeba/` and
  `list_bbox_celeba.txt`, crops a square of twice the face box around it and uses the box.
- `FaceFolder(root)`: every image under a folder (recursively) is a face crop; the region is the
  central `region_frac` of the side and the face the central `face_frac` (the corpus builder's
  layout: face box 1/2, protected region 3/4). A `split.txt` ("relative/path<TAB>split")
  selects a split.
Each dataset's `face_fraction` (face width / region width) lets the ratio count blocks across
the face, as the paper and the pipeline do.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SPLITS = {"train": 0, "val": 1, "test": 2}


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255


class Augment:
    """Small-corpus augmentation: flip, scale/shift jitter, brightness/contrast/saturation.
    Deterministic given the sample's RNG."""

    def __init__(self, flip: bool = True, jitter: float = 0.06, color: float = 0.15):
        self.flip, self.jitter, self.color = flip, jitter, color

    def __call__(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        h, w = img.shape[:2]
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
        if self.jitter:
            s = 1 + rng.uniform(-self.jitter, self.jitter)
            tx, ty = (rng.uniform(-self.jitter, self.jitter) * w for _ in range(2))
            m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], np.float32)
            img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REFLECT)
        if self.color:
            x = img.astype(np.float32)
            gray = x.mean(axis=2, keepdims=True)
            x = gray + (x - gray) * (1 + rng.uniform(-self.color, self.color))
            x = (x - x.mean()) * (1 + rng.uniform(-self.color, self.color)) + x.mean()
            x = x * (1 + rng.uniform(-self.color, self.color))
            img = np.clip(x, 0, 255).astype(np.uint8)
        return img


class _Base(Dataset):
    def __init__(self, size: int, augment: Augment | None, seed: int):
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations differ per epoch but are reproducible."""
        self.epoch = epoch

    def _rng(self, index: int) -> random.Random:
        return random.Random(hash((self.seed, self.epoch, index)))


class FaceFolder(_Base):
    def __init__(self, root: str | Path, split: str | None = None, size: int = 128,
                 region_frac: float = 0.75, augment: Augment | None = None, seed: int = 0,
                 face_frac: float = 0.5):
        super().__init__(size, augment, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"face folder not found: {self.root}")
        split_file = self.root / "split.txt"
        if split is not None and split_file.exists():
            rows = [ln.split("\t") for ln in split_file.read_text().splitlines() if ln.strip()]
            self.files = sorted(self.root / p for p, s in rows if s.strip() == split)
        else:
            self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not self.files:
            raise FileNotFoundError(f"no face images under {self.root} (split {split})")
        side = int(round(size * region_frac))
        side -= side % 2
        o = (size - side) // 2
        self.box = torch.tensor([o, o, o + side, o + side])
        # corpus crops: the face box is half the crop, the region three quarters of it
        self.face_fraction = face_frac / region_frac

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        img = _read_rgb(self.files[index])
        img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self.augment is not None:
            img = self.augment(img, self._rng(index))
        return _to_tensor(img), self.box.clone()


class CelebA(_Base):
    face_fraction = 1.0  # the paper's mask is the face box itself

    # centre and side of the face in img_align_celeba (178 x 218), measured on the layout
    _ALIGNED_CENTER = (89, 121)
    _ALIGNED_SIDE = 110

    def __init__(self, root: str | Path, split: str = "train", variant: str = "aligned",
                 size: int = 256, augment: Augment | None = None, seed: int = 0,
                 limit: int | None = None):
        super().__init__(size, augment, seed)
        self.root = Path(root)
        if split not in _SPLITS:
            raise ValueError(f"split must be train, val or test, got '{split}'")
        if variant not in ("aligned", "wild"):
            raise ValueError(f"variant must be aligned or wild, got '{variant}'")
        self.variant = variant
        part = self.root / "list_eval_partition.txt"
        if not part.is_file():
            raise FileNotFoundError(f"{part} not found: is {self.root} a CelebA folder?")
        want = _SPLITS[split]
        names = [ln.split()[0] for ln in part.read_text().splitlines()
                 if len(ln.split()) == 2 and int(ln.split()[1]) == want]
        self.names = names[:limit] if limit else names
        if variant == "aligned":
            self.folder = self.root / "img_align_celeba"
        else:
            self.folder = self.root / "img_celeba"
            self.bboxes = {}
            lines = (self.root / "list_bbox_celeba.txt").read_text().splitlines()
            for ln in lines[2:]:
                parts = ln.split()
                if len(parts) == 5:
                    self.bboxes[parts[0]] = tuple(int(v) for v in parts[1:])
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} not found")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        name = self.names[index]
        img = _read_rgb(self.folder / name)
        if self.variant == "aligned":
            cx, cy = self._ALIGNED_CENTER
            side = self._ALIGNED_SIDE * 2
            face = self._ALIGNED_SIDE
        else:
            x, y, w, h = self.bboxes[name]
            cx, cy, face = x + w / 2, y + h / 2, max(w, h)
            side = face * 2
        # square crop of twice the face around its centre, padded by reflection at the borders
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = int(side)
        padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        crop = padded[y0 + pad:y0 + pad + int(side), x0 + pad:x0 + pad + int(side)]
        crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self.augment is not None:
            crop = self.augment(crop, self._rng(index))
        f = int(round(self.size * face / side))
        f -= f % 2
        o = (self.size - f) // 2
        return _to_tensor(crop), torch.tensor([o, o, o + f, o + f])


def open_dataset(spec: str, split: str, size: int, augment: bool, seed: int):
    """'celeba:/path', 'celeba-wild:/path' or 'folder:/path' (a bare path means folder)."""
    kind, _, path = spec.partition(":") if ":" in spec else ("folder", "", spec)
    aug = Augment() if augment else None
    if kind == "celeba":
        return CelebA(path, split, "aligned", size, aug, seed)
    if kind == "celeba-wild":
        return CelebA(path, split, "wild", size, aug, seed)
    if kind == "folder":
        return FaceFolder(path, split, size, augment=aug, seed=seed)
    raise ValueError(f"unknown dataset kind '{kind}' in '{spec}'")


