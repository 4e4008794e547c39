"""Protection modes: pure functions `(image, faces) -> new image`, chosen by name.

The registry of modes, and mosaic, blur and solid; the adversarial modes are in
`protect/adversarial.py`; `streamguard.protect.build_protector(cfg)` picks one. Modes that need trained weights refuse to build,
with a clear error, when the weights are absent: never a silent fallback to a weaker mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from streamguard.config import ProtectConfig
from streamguard.frames import Faces
from streamguard.registry import Registry
from streamguard.protect.pixelize import (
    block_size, cell_means, face_regions, paint_cells, pixelize_frame,
)

Protector = Callable[[np.ndarray, Faces], np.ndarray]
MODES: Registry[Callable[[ProtectConfig], Protector]] = Registry("protection mode")
register_mode = MODES.register



def protect_whole_frame(image: np.ndarray, cfg: ProtectConfig) -> np.ndarray:
    """Fail-closed protection of an entire frame (a PlanarImage is converted whole: the
    result is an RGB array)."""
    return pixelize_frame(np.asarray(image), cfg.frame_blocks)


class CellProtector:
    """The mosaic, each cell's colour optionally moved by a per-cell δ (the block-wise
    generators override `deltas`): the output is a clean mosaic either way.

    Called as `(image, faces) -> image` it samples every face anew on this frame's grid; the
    track lock (`protect.locked.TrackLock`) drives `deltas` with cells it holds per track.
    """

    def __init__(self, cfg: ProtectConfig):
        self.cfg = cfg

    def deltas(self, cells: list[np.ndarray]) -> list[np.ndarray]:
        """Per-cell offsets, in pixel units, for (rows, cols, C) float cell means; 0 here."""
        return [np.zeros_like(c) for c in cells]

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        out = image.copy()
        jobs = []
        for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, self.cfg.margin):
            s = block_size(face_w, self.cfg.blocks, self.cfg.min_block_px)
            jobs.append(((x0, y0, x1, y1), *cell_means(image[y0:y1, x0:x1], s)))
        deltas = self.deltas([job[1] for job in jobs])
        for ((x0, y0, x1, y1), means, dy, dx), delta in zip(jobs, deltas):
            out[y0:y1, x0:x1] = paint_cells(means + delta, dy, dx)
        return out


@register_mode("mosaic")
def _mosaic(cfg: ProtectConfig) -> Protector:
    return CellProtector(cfg)


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
