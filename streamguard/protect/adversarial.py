"""Adversarial pixelization: the mosaic plus a shipped generator's δ, run through an engine.

- `adversarial-identity` / `adversarial-block`: the block-wise generators; δ is one offset per
  mosaic cell, so the output stays a clean mosaic.
- `adversarial-pixel`: the paper's pixel-wise generator, run in its training layout.

The generators run through `streamguard.backends` (which picks the inference library and the
device); this module only prepares their inputs and paints their outputs. A block-wise
generator whose engine was built before starts without torch (`backends.reuse`).
"""

from __future__ import annotations

import logging
from functools import partial

import cv2
import numpy as np

from streamguard.backends import Engine, EngineSpec, load_engine, resolve_device
from streamguard.backends.reuse import remember, reuse
from streamguard.config import ProtectConfig
from streamguard.frames import Faces
from streamguard.models.weights import weights_dir
from streamguard.protect.modes import CellProtector, Protector, register_mode
from streamguard.protect.pixelize import block_size, face_regions, mosaic_region

# mode -> shipped weights (streamguard/weights/NAME.safetensors + NAME.json)
ADVERSARIAL_WEIGHTS = {
    "adversarial-block": "blockwise_paper",
    "adversarial-identity": "blockwise_identity",
    "adversarial-pixel": "pixelwise_paper",
}

log = logging.getLogger(__name__)

PIXELWISE_SIZE, PIXELWISE_REGION = 128, 96  # the pixel-wise generator's training layout


def cells_spec(device: str) -> EngineSpec:
    """The cell network's inputs: cells (B, 3, rows, cols) in [0, 1]; batch and grid vary."""
    return EngineSpec(input_names=("cells",), example_shapes=((2, 3, 14, 14),),
                      dynamic={"cells": {0: (1, 4, 32), 2: (2, 16, 96), 3: (2, 16, 96)}},
                      device=device)


def cells_engine(name: str, backend: str, device: str = "auto") -> Engine:
    """A shipped block-wise generator's cell network (cells -> δ) as an engine: the one built
    before, reused without torch where it can be (`backends.reuse`), else built (and
    remembered)."""
    weights = weights_dir() / f"{name}.safetensors"
    engine = reuse(name, weights, cells_spec("cpu"), backend, device)
    if engine is not None:
        return engine
    from streamguard.models.generators import CellsToDelta
    from streamguard.models.weights import load_shipped

    spec = cells_spec(resolve_device(device))
    engine = load_engine(CellsToDelta(load_shipped(name)), name, spec, backend)
    try:
        remember(engine, name, weights, spec, backend)
    except OSError as exc:  # a read-only engines folder: the next start builds again
        log.info("engine %s: not remembered (%s)", name, exc)
    return engine


def image_engine(name: str, backend: str, device: str = "cpu",
                  precision: str = "fp32") -> Engine:
    """A shipped image network (the pixel-wise generator, the attackers: (image, mask)
    128 x 128 in) as an engine."""
    from streamguard.models.weights import load_shipped

    size = PIXELWISE_SIZE
    spec = EngineSpec(("image", "mask"), ((1, 3, size, size), (1, 1, size, size)),
                      {"image": {0: (1, 4, 16)}, "mask": {0: (1, 4, 16)}},
                      precision=precision, device=device)
    return load_engine(load_shipped(name), name, spec, backend)


class BlockwiseProtector(CellProtector):
    """Mosaic plus a block-wise generator's δ per cell: the output stays a clean mosaic.

    All grids of one shape (a frame's faces, or the tracks the lock samples together) go
    through the engine in one batch.
    """

    def __init__(self, engine: Engine, cfg: ProtectConfig):
        super().__init__(cfg)
        self.engine = engine

    def deltas(self, cells: list[np.ndarray]) -> list[np.ndarray]:
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(cells):
            groups.setdefault(c.shape, []).append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(cells)
        for idx in groups.values():
            batch = np.stack([cells[i] for i in idx]).transpose(0, 3, 1, 2) / np.float32(255)
            d = self.engine.numpy(batch) * np.float32(255)  # one sync per shape
            for k, i in enumerate(idx):
                out[i] = d[k].transpose(1, 2, 0)
        return out


class PixelwiseProtector:
    """Mosaic plus the pixel-wise generator's δ, computed in the training layout (the region
    is the central 3/4 of a 128 px crop with context) and resized back to the region."""

    def __init__(self, engine: Engine, cfg: ProtectConfig, device: str):
        self.engine = engine
        self.cfg = cfg
        self.device = device

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        import torch

        size, region = PIXELWISE_SIZE, PIXELWISE_REGION
        out = image.copy()
        mask = torch.ones(1, 1, size, size, device=self.device)
        o = (size - region) // 2
        mask[..., o:o + region, o:o + region] = 0
        for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, self.cfg.margin):
            s = block_size(face_w, self.cfg.blocks, self.cfg.min_block_px)
            mosaic = mosaic_region(image[y0:y1, x0:x1], s)
            canvas = out.copy()
            canvas[y0:y1, x0:x1] = mosaic
            # a context square around the region, REGION/SIZE of it being the region
            side_x, side_y = (x1 - x0) * size / region, (y1 - y0) * size / region
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            m = np.array([[size / side_x, 0, size / 2 - cx * size / side_x],
                          [0, size / side_y, size / 2 - cy * size / side_y]], np.float32)
            ctx = cv2.warpAffine(canvas, m, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            x = torch.from_numpy(ctx).permute(2, 0, 1)[None].float().to(self.device) / 255
            delta = self.engine(x, mask)[0, :, o:o + region, o:o + region].float().cpu()
            d = cv2.resize(delta.permute(1, 2, 0).numpy(), (x1 - x0, y1 - y0),
                           interpolation=cv2.INTER_LINEAR)
            out[y0:y1, x0:x1] = np.clip(mosaic + d * 255 + 0.5, 0, 255).astype(np.uint8)
        return out


def _adversarial(mode: str, cfg: ProtectConfig) -> Protector:
    name = ADVERSARIAL_WEIGHTS[mode]
    if mode == "adversarial-pixel":
        device = resolve_device(cfg.device)
        return PixelwiseProtector(image_engine(name, cfg.backend, device), cfg, device)
    return BlockwiseProtector(cells_engine(name, cfg.backend, cfg.device), cfg)


for _mode in ADVERSARIAL_WEIGHTS:
    register_mode(_mode)(partial(_adversarial, _mode))
