"""Face detection: the Detector protocol, a registry, overlapping tiles and NMS.

A detector turns an (H, W, 3) uint8 RGB image into `Faces`. Whole frames are squashed to a
small model input, so faces under ~8 % of the frame width vanish; the tiled pass re-runs the
model on overlapping tiles (every `tile_every`-th frame) and merges everything with NMS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from streamguard.config import DetectConfig
from streamguard.errors import ConfigError
from streamguard.frames import Faces
from streamguard.registry import Registry

# A box model: RGB image -> (xyxy (N, 4) float32 in image pixels, score (N,) float32)
BoxModel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Detector(Protocol):
    def detect(self, image: np.ndarray, index: int) -> Faces:
        """Faces in an RGB image; `index` is the frame number (decides the tiled pass)."""

    def close(self) -> None: ...


_DETECTORS: Registry[Callable[[DetectConfig], Detector]] = Registry("detector")
register_detector = _DETECTORS.register


def available_detectors() -> list[str]:
    _load_builtin()
    return _DETECTORS.names()


def create_detector(cfg: DetectConfig) -> Detector:
    _load_builtin()
    factory = _DETECTORS.get(cfg.detector)
    if factory is None:
        raise ConfigError(
            f"unknown detector '{cfg.detector}'; known: {', '.join(available_detectors())}"
        )
    return factory(cfg)


def _load_builtin() -> None:
    # imported lazily: registering MediaPipe must not load it for users of other detectors
    from streamguard.detect import mediapipe  # noqa: F401


def tile_grid(
    width: int, height: int, max_side: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles (x0, y0, x1, y1) covering the frame, each side <= max_side.

    Returns [] when one tile would be the whole frame (the full-frame pass already covers it).
    """

    def split(length: int) -> list[tuple[int, int]]:
        n = 1
        while length / (n - (n - 1) * overlap) > max_side:
            n += 1
        if n == 1:
            return [(0, length)]
        size = length / (n - (n - 1) * overlap)
        step = size * (1 - overlap)
        spans = [(int(round(i * step)), int(round(i * step + size))) for i in range(n)]
        spans[-1] = (spans[-1][0], length)
        return spans

    xs, ys = split(width), split(height)
    if len(xs) == 1 and len(ys) == 1:
        return []
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(xyxy: np.ndarray, score: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while len(order):
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[box_iou(xyxy[i : i + 1], xyxy[rest])[0] <= iou]
    return np.asarray(keep, np.int64)


class TiledDetector:
    """Full-frame pass every frame, plus the overlapping tiles spread over `tile_every` frames.

    Each frame runs ceil(tiles / tile_every) tiles in round-robin order, so every tile is
    revisited at least every `tile_every` frames while the per-frame cost stays even (no
    latency spike every k-th frame, which matters for live streams).
    """

    def __init__(self, full_frame: BoxModel, tiles: BoxModel, cfg: DetectConfig):
        self._full_frame = full_frame
        self._tiles = tiles
        self.cfg = cfg
        self._grid_for: tuple[int, int] | None = None
        self._grid: list[tuple[int, int, int, int]] = []

    def _grid_of(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        if self._grid_for != (width, height):
            self._grid = tile_grid(width, height, self.cfg.tile_max_side, self.cfg.tile_overlap)
            self._grid_for = (width, height)
        return self._grid

    def tiles_for(self, width: int, height: int, index: int) -> list[tuple[int, int, int, int]]:
        """The tiles frame `index` runs."""
        grid = self._grid_of(width, height)
        every = self.cfg.tile_every
        if not every or not grid:
            return []
        per_frame = -(-len(grid) // every)
        start = (index % every) * per_frame
        return grid[start:start + per_frame]

    def detect(self, image: np.ndarray, index: int) -> Faces:
        boxes, scores = [], []
        xyxy, score = self._full_frame(image)
        boxes.append(xyxy)
        scores.append(score)
        for x0, y0, x1, y1 in self.tiles_for(image.shape[1], image.shape[0], index):
            t_xyxy, t_score = self._tiles(np.ascontiguousarray(image[y0:y1, x0:x1]))
            boxes.append(t_xyxy + np.array([x0, y0, x0, y0], np.float32))
            scores.append(t_score)
        xyxy = np.concatenate(boxes).astype(np.float32)
        score = np.concatenate(scores).astype(np.float32)
        keep = nms(xyxy, score, self.cfg.nms_iou)
        return Faces.from_boxes(xyxy[keep], score[keep])


def count_tiles(width: int, height: int, cfg: DetectConfig) -> int:
    """Tiles per tiled pass at this frame size (for reports and benchmarks)."""
    return len(tile_grid(width, height, cfg.tile_max_side, cfg.tile_overlap))


