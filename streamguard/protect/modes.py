"""Protection modes: pure functions `(image, faces) -> new image`, chosen by name.

`build_protector(cfg)` returns the function for `cfg.mode`. Modes that need trained weights
refuse to build, with a clear error, when the weights are absent: never a silent fallback to a
weaker mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from streamguard.config import ProtectConfig
from streamguard.errors import ConfigError, EngineError, ModelUnavailableError
from streamguard.frames import Faces
from streamguard.registry import Registry
from streamguard.protect.pixelize import (
    block_size, cell_means, face_regions, mosaic_region, paint_cells, pixelize, pixelize_frame,
)

Protector = Callable[[np.ndarray, Faces], np.ndarray]
_MODES: Registry[Callable[[ProtectConfig], Protector]] = Registry("protection mode")
register_mode = _MODES.register


def available_modes() -> list[str]:
    return _MODES.names()


def build_protector(cfg: ProtectConfig) -> Protector:
    builder = _MODES.get(cfg.mode)
    if builder is None:
        raise ConfigError(f"unknown protection mode '{cfg.mode}'; known: {available_modes()}")
    return builder(cfg)


def protect_whole_frame(image: np.ndarray, cfg: ProtectConfig) -> np.ndarray:
    """Fail-closed protection of an entire frame."""
    return pixelize_frame(image, cfg.frame_blocks)


@register_mode("mosaic")
def _mosaic(cfg: ProtectConfig) -> Protector:
    return partial(pixelize, blocks=cfg.blocks, margin=cfg.margin, min_block_px=cfg.min_block_px)


def blur(image: np.ndarray, faces: Faces, sigma_frac: float, margin: float) -> np.ndarray:
    """Gaussian blur of each face region. Weaker than a mosaic against restoration models."""
    out = image.copy()
    for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, margin):
        sigma = max(sigma_frac * face_w, 1.0)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), sigma,
                                             borderType=cv2.BORDER_REFLECT)
    return out


@register_mode("blur")
def _blur(cfg: ProtectConfig) -> Protector:
    return partial(blur, sigma_frac=cfg.blur_sigma, margin=cfg.margin)


def solid(image: np.ndarray, faces: Faces, color: tuple[int, int, int], margin: float) -> np.ndarray:
    out = image.copy()
    for x0, y0, x1, y1, _ in face_regions(faces, image.shape, margin):
        out[y0:y1, x0:x1] = color
    return out


@register_mode("solid")
def _solid(cfg: ProtectConfig) -> Protector:
    return partial(solid, color=cfg.solid_color, margin=cfg.margin)


# -- adversarial pixelization: shipped generators on top of the mosaic --------------------------

# mode -> shipped weights (streamguard/weights/NAME.safetensors + NAME.json)
ADVERSARIAL_WEIGHTS = {
    "adversarial-block": "blockwise_paper",
    "adversarial-identity": "blockwise_identity",
    "adversarial-pixel": "pixelwise_paper",
}


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda" without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineError("protect.device = \"cuda\" but torch sees no CUDA device here; use "
                          "\"auto\" or \"cpu\"")
    return name


def cells_engine(model, name: str, backend: str, device: str = "cpu"):
    """The block-wise generator's cell network (cells (B, 3, rows, cols) -> δ) as an engine:
    batch and grid size vary."""
    import torch

    from streamguard.backends import EngineSpec, load_engine

    class CellsToDelta(torch.nn.Module):
        def __init__(self, generator):
            super().__init__()
            self.generator = generator

        def forward(self, cells):
            return self.generator.cells_to_delta(cells)

    spec = EngineSpec(input_names=("cells",), example_shapes=((2, 3, 14, 14),),
                      dynamic={"cells": {0: (1, 4, 32), 2: (2, 16, 96), 3: (2, 16, 96)}},
                      device=device)
    return load_engine(CellsToDelta(model), name, spec, backend)


class BlockwiseProtector:
    """Mosaic plus a block-wise generator's δ per cell: the output stays a clean mosaic.

    All faces of a frame whose grids have the same shape go through the engine in one batch.
    """

    def __init__(self, model, cfg: ProtectConfig, name: str = "blockwise"):
        self.model = model
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.engine = cells_engine(model, name, cfg.backend, self.device)

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        import torch

        out = image.copy()
        jobs = []
        for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, self.cfg.margin):
            s = block_size(face_w, self.cfg.blocks, self.cfg.min_block_px)
            means, dy, dx = cell_means(image[y0:y1, x0:x1], s)
            jobs.append(((x0, y0, x1, y1), means, dy, dx))
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job[1].shape, []).append(i)
        deltas: dict[int, np.ndarray] = {}
        for idx in groups.values():
            cells = torch.from_numpy(np.stack([jobs[i][1] for i in idx])).permute(0, 3, 1, 2)
            d = (self.engine(cells.contiguous() / 255.0) * 255.0).float().cpu()  # one sync
            for k, i in enumerate(idx):
                deltas[i] = d[k].permute(1, 2, 0).numpy()
        for i, ((x0, y0, x1, y1), means, dy, dx) in enumerate(jobs):
            out[y0:y1, x0:x1] = paint_cells(means + deltas[i], dy, dx)
        return out


class PixelwiseProtector:
    """Mosaic plus the pixel-wise generator's δ, computed in the training layout (the region
    is the central 3/4 of a 128 px crop with context) and resized back to the region."""

    SIZE, REGION = 128, 96

    def __init__(self, model, cfg: ProtectConfig):
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.cfg = cfg

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        import torch

        out = image.copy()
        mask = torch.ones(1, 1, self.SIZE, self.SIZE, device=self.device)
        o = (self.SIZE - self.REGION) // 2
        mask[..., o:o + self.REGION, o:o + self.REGION] = 0
        for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, self.cfg.margin):
            s = block_size(face_w, self.cfg.blocks, self.cfg.min_block_px)
            mosaic = mosaic_region(image[y0:y1, x0:x1], s)
            canvas = out.copy()
            canvas[y0:y1, x0:x1] = mosaic
            # a context square around the region, REGION/SIZE of it being the region
            side_x, side_y = (x1 - x0) * self.SIZE / self.REGION, (y1 - y0) * self.SIZE / self.REGION
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            m = np.array([[self.SIZE / side_x, 0, self.SIZE / 2 - cx * self.SIZE / side_x],
                          [0, self.SIZE / side_y, self.SIZE / 2 - cy * self.SIZE / side_y]],
                         np.float32)
            ctx = cv2.warpAffine(canvas, m, (self.SIZE, self.SIZE), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            x = torch.from_numpy(ctx).permute(2, 0, 1)[None].float().to(self.device) / 255
            with torch.inference_mode():
                delta = self.model(x, mask)[0, :, o:o + self.REGION, o:o + self.REGION].cpu()
            d = cv2.resize(delta.permute(1, 2, 0).numpy(), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_LINEAR)
            out[y0:y1, x0:x1] = np.clip(mosaic + d * 255 + 0.5, 0, 255).astype(np.uint8)
        return out


def _adversarial(mode: str, cfg: ProtectConfig) -> Protector:
    from streamguard.models.weights import load_shipped

    name = ADVERSARIAL_WEIGHTS[mode]
    model = load_shipped(name)  # raises when missing or corrupt
    if mode == "adversarial-pixel":
        return PixelwiseProtector(model, cfg)
    return BlockwiseProtector(model, cfg, name)


for _mode in ADVERSARIAL_WEIGHTS:
    register_mode(_mode)(partial(_adversarial, _mode))
