"""The one mosaic operator, shared by the pipeline (numpy) and training (torch).

A face region is cut into square cells of `s` pixels anchored at the region's top-left corner
(the last row/column of cells may be partial at the region's edge); each cell becomes the mean
of its pixels (block-mean downsampling, then nearest upsampling: the paper's pixelization).

What protects identity is the number of blocks across the face, not the block size in pixels,
so the cell size derives from the face width: `s = max(min_block_px, round(face_w / blocks))`.
The paper's ratio r on its 128 px faces is `blocks = round(128 * r)` (0.10 -> 13).

`mosaic_region` (numpy) and `mosaic_tensor` (torch) compute the same grid and the same means;
a test keeps them equal. Both accept an optional per-block offset `delta` so adversarial
perturbations stay flat inside every block.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from streamguard.frames import Faces

if TYPE_CHECKING:
    import torch


def block_size(face_width: float, blocks: int, min_block_px: int = 2) -> int:
    """Cell side in pixels for `blocks` cells across a face `face_width` pixels wide."""
    return max(int(min_block_px), int(round(face_width / max(blocks, 1))), 1)


def grid_shape(height: int, width: int, s: int) -> tuple[int, int]:
    """(rows, cols) of the cell grid over a height x width region."""
    return math.ceil(height / s), math.ceil(width / s)


def ratio_to_blocks(ratio: float, face_px: int = 128) -> int:
    """The paper's pixelization ratio as blocks across a face of `face_px` pixels."""
    return max(1, int(round(face_px * ratio)))


def cell_means(crop: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean colour of every s x s cell of an (h, w, C) crop: ((rows, cols, C) float32, dy, dx),
    dy/dx being the cell heights and widths (the last row/column may be partial)."""
    h, w = crop.shape[:2]
    ys = np.arange(0, h, s)
    xs = np.arange(0, w, s)
    sums = np.add.reduceat(np.add.reduceat(crop.astype(np.float32), ys, axis=0), xs, axis=1)
    dy = np.diff(np.append(ys, h))
    dx = np.diff(np.append(xs, w))
    return sums / (dy[:, None] * dx[None, :])[..., None], dy, dx


def paint_cells(means: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Round cell colours to uint8 and repeat each over its cell: the mosaic image."""
    cells = np.clip(np.rint(means), 0, 255).astype(np.uint8)
    # widen the few rows first, then repeat whole rows (7x faster than two full repeats)
    return np.repeat(np.repeat(cells, dx, axis=1), dy, axis=0)


def mosaic_region(crop: np.ndarray, s: int, delta: np.ndarray | None = None) -> np.ndarray:
    """Block-mean mosaic of an (h, w, C) uint8 crop with s x s cells; returns a new array.

    delta: optional (rows, cols, C) float offsets in pixel units added to each cell's mean
    (clipped to 0..255), so the result stays flat inside every cell.
    """
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        return crop.copy()
    means, dy, dx = cell_means(crop, s)
    if delta is not None:
        if delta.shape != means.shape:
            raise ValueError(f"delta shape {delta.shape} does not match the grid {means.shape}")
        means = means + delta
    return paint_cells(means, dy, dx)


def face_regions(
    faces: Faces, frame_shape: tuple[int, ...], margin: float
) -> list[tuple[int, int, int, int, float]]:
    """Integer regions (x0, y0, x1, y1) to protect, each with its face width.

    Boxes grow by `margin` of their size on each side, round outward (never shrink onto the
    face) and are clipped to the frame; boxes wholly off-frame are skipped.
    """
    height, width = frame_shape[:2]
    regions = []
    for x0, y0, x1, y1 in faces.xyxy:
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        gx0 = max(int(math.floor(x0 - margin * bw)), 0)
        gy0 = max(int(math.floor(y0 - margin * bh)), 0)
        gx1 = min(int(math.ceil(x1 + margin * bw)), width)
        gy1 = min(int(math.ceil(y1 + margin * bh)), height)
        if gx1 > gx0 and gy1 > gy0:
            regions.append((gx0, gy0, gx1, gy1, float(bw)))
    return regions


def merge_nested(faces: Faces, inside: float = 0.5) -> Faces:
    """One box per face: a box lying mostly (`inside` of its area) within a larger one (an eye
    or a mouth the tiles found on their own, or two tracks of one face) is merged into it,
    their union kept. Without this the part would get its own, finer grid on top of the
    face's mosaic: "N blocks across the face" must hold for the whole face."""
    if len(faces) < 2:
        return faces
    xyxy = faces.xyxy.astype(np.float64)
    area = np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1)
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    np.fill_diagonal(inter, 0)
    if not ((inter >= inside * area[None, :]) & (area[None, :] > 0)).any():
        return faces  # no box lies in another: nothing merges (the usual frame)
    boxes = xyxy.tolist()
    alive = [True] * len(boxes)
    order = np.argsort(-area, kind="stable").tolist()
    for a_pos, a in enumerate(order):
        if not alive[a]:
            continue
        for b in order[a_pos + 1:]:
            if not alive[b]:
                continue
            ax0, ay0, ax1, ay1 = boxes[a]
            bx0, by0, bx1, by1 = boxes[b]
            inter_ab = (max(min(ax1, bx1) - max(ax0, bx0), 0.0)
                        * max(min(ay1, by1) - max(ay0, by0), 0.0))
            area_b = (bx1 - bx0) * (by1 - by0)
            if area_b > 0 and inter_ab >= inside * area_b:
                boxes[a] = [min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1)]
                alive[b] = False
    if all(alive):
        return faces
    keep = np.array(alive)
    return Faces(np.array(boxes, np.float32)[keep], faces.score[keep], faces.track_id[keep])


def pixelize(
    image: np.ndarray, faces: Faces, blocks: int, margin: float = 0.0, min_block_px: int = 2
) -> np.ndarray:
    """Mosaic every face region of an (H, W, C) uint8 image; returns a new image."""
    out = image.copy()
    for x0, y0, x1, y1, face_w in face_regions(faces, image.shape, margin):
        s = block_size(face_w, blocks, min_block_px)
        out[y0:y1, x0:x1] = mosaic_region(out[y0:y1, x0:x1], s)
    return out


def pixelize_frame(image: np.ndarray, frame_blocks: int) -> np.ndarray:
    """Mosaic the whole frame with `frame_blocks` cells across its width (fail-closed path)."""
    s = max(2, math.ceil(image.shape[1] / frame_blocks))
    return mosaic_region(image, s)


def mosaic_tensor(x: torch.Tensor, s: int, delta: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable twin of `mosaic_region` for (B, C, H, W) float tensors (any value range).

    delta: optional (B, C, rows, cols) per-cell offsets in the tensor's units. No rounding or
    clipping: training decides its own range.
    """
    h, w = x.shape[-2:]
    means = cell_pool(x, s)
    if delta is not None:
        means = means + delta
    return upsample_cells(means, s, h, w)


def cell_pool(x: torch.Tensor, s: int) -> torch.Tensor:
    """Mean of every s x s cell of (B, C, H, W) anchored at the top-left corner:
    (B, C, ceil(H / s), ceil(W / s)); partial edge cells average their valid pixels only."""
    import torch.nn.functional as F

    return F.avg_pool2d(x, kernel_size=s, stride=s, ceil_mode=True)


def upsample_cells(cells: torch.Tensor, s: int, height: int, width: int) -> torch.Tensor:
    """Nearest-upsample (B, C, rows, cols) cells by s and crop to height x width."""
    up = cells.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
    return up[..., :height, :width]


# -- training-side helpers: the paper's ratio strategies on tensors ---------------------------

RATIO_STRATEGIES = ("single", "multiple", "infinite", "wide")

# Our corpus crops protect the face box grown by the pipeline's 25 % margin per side, so the
# face is 1 / 1.5 of the region's width; in the paper's CelebA protocol the region is the face.
CORPUS_FACE_FRACTION = 1 / 1.5


def sample_ratio(strategy: str, generator: torch.Generator | None = None) -> float:
    """The paper's training strategies: single 0.10, multiple {0.08, 0.10, 0.12}, infinite
    uniform in [0.08, 0.12]; plus "wide", uniform in [0.05, 0.13], which also covers the
    coarser mosaics the product uses (0.06 = 8 blocks across the face)."""
    import torch

    u = float(torch.rand((), generator=generator))
    if strategy == "single":
        return 0.10
    if strategy == "multiple":
        return (0.08, 0.10, 0.12)[min(int(u * 3), 2)]
    if strategy == "infinite":
        return 0.08 + 0.04 * u
    if strategy == "wide":
        return 0.05 + 0.08 * u
    raise ValueError(f"ratio strategy must be one of {RATIO_STRATEGIES}, got '{strategy}'")


def pixelize_regions(images: torch.Tensor, boxes: torch.Tensor, ratio: float,
                     face_fraction: float = 1.0, min_block_px: int = 2):
    """Pixelize one region per image at a pixelization ratio.

    images: (B, C, H, W); boxes: (B, 4) integer x0, y0, x1, y1. The ratio counts blocks across
    the face as the paper does on its 128 px faces (`ratio_to_blocks(ratio)`: 0.10 -> 13), the
    face being `face_fraction` of the region's width; cells of
    `block_size(face width, blocks)` pixels are anchored at the region's top-left corner,
    exactly as the pipeline does with `protect.blocks`.
    Returns (pixelized, mask (B, 1, H, W) with 1 = non-pixelized, block sizes (B,) long).
    """
    import torch

    out = images.clone()
    mask = torch.ones_like(images[:, :1])
    blocks = torch.zeros(len(images), dtype=torch.long)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        face_w = (x1 - x0) * face_fraction
        s = block_size(face_w, ratio_to_blocks(ratio), min_block_px)
        out[i, :, y0:y1, x0:x1] = mosaic_tensor(images[i:i + 1, :, y0:y1, x0:x1], s)[0]
        mask[i, :, y0:y1, x0:x1] = 0
        blocks[i] = s
    return out, mask, blocks
