"""Track-locked mosaics: a face keeps one mosaic through its track.

A per-frame mosaic samples the face anew on every frame, on a grid placed by that frame's box.
As the box jitters and the face moves by fractions of a cell, consecutive frames sample the
face at different sub-cell phases, and an attacker who registers the frames on the face and
averages them recovers detail that no single frame holds (multi-frame super-resolution; the
video section of docs/privacy.md measures it).

`TrackLock` keeps, per face track:
- **one grid**: rows x cols cells, fixed when the track is first protected (`blocks` across
  the face, as the per-frame mosaic). The rectangle it is painted on follows the face box grown
  by the margin, but moves only when the box leaves it or one of its edges is more than half a
  cell away from where the region would be: a still or jittering face gets the identical grid
  on every frame, and the face box is always inside it;
- **held colours**: the cell means (plus the generator's δ) sampled over that rectangle, held
  for `hold_frames` frames, then sampled again and faded in over `fade_frames`. A fade frame
  mixes two mosaics that are both shown outright, so it tells nothing new: K consecutive frames
  carry at most ceil(K / hold_frames) + 1 different samples of the face.

Untracked faces (track id -1) get the per-frame mosaic. Parts of the rectangle outside the
frame are sampled from the nearest edge pixels and not painted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from streamguard.config import ProtectConfig
from streamguard.frames import Faces
from streamguard.protect.modes import CellProtector
from streamguard.protect.pixelize import block_size

FORGET_AFTER = 300  # frames without a box after which a track's mosaic is forgotten


@dataclass
class _Held:
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels; may reach off-frame
    rows: int
    cols: int
    colours: np.ndarray  # (rows, cols, C) float32: cell means + δ, as sampled
    faded_from: np.ndarray | None  # colours shown before the last sample, fading out
    sampled: int  # frame count of the last sample
    seen: int  # frame count of the last box
    painted: tuple | None = None  # (rect, mosaic) last painted while no fade ran: reused


def grown_region(box: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """The face box grown by `margin` of its size on each side, rounded outward, not clipped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    return (math.floor(x0 - margin * bw), math.floor(y0 - margin * bh),
            math.ceil(x1 + margin * bw), math.ceil(y1 + margin * bh))


def cell_edges(length: int, n: int) -> np.ndarray:
    """Pixel offsets of n + 1 cell edges splitting `length` pixels into n near-equal cells."""
    return np.rint(np.arange(n + 1) * (length / n)).astype(np.int64)


def sample_cells(image: np.ndarray, rect: tuple[int, int, int, int], rows: int,
                 cols: int) -> np.ndarray:
    """Mean colour of each of rows x cols cells over `rect` ((rows, cols, C) float32); pixels of
    the rectangle outside the frame take the nearest edge pixel's colour."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = rect
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:  # wholly past the frame: the nearest edge pixels
        rows_at = np.clip(np.arange(y0, y1), 0, height - 1)
        cols_at = np.clip(np.arange(x0, x1), 0, width - 1)
        crop = np.ascontiguousarray(image[rows_at[:, None], cols_at[None, :]])
    else:
        crop = image[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):  # partly past: the nearest edge pixel
            crop = cv2.copyMakeBorder(crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1,
                                      cv2.BORDER_REPLICATE)
    ys, xs = cell_edges(y1 - y0, rows), cell_edges(x1 - x0, cols)
    # exact integer sums from the integral image, read at the cell corners (4x faster than
    # summing rows then columns); 64-bit floats, exact too, where 32-bit sums could overflow
    depth = cv2.CV_32S if crop.shape[0] * crop.shape[1] * 255 < 2**31 else cv2.CV_64F
    corner = cv2.integral(crop, sdepth=depth)[ys][:, xs]
    sums = corner[1:, 1:] - corner[:-1, 1:] - corner[1:, :-1] + corner[:-1, :-1]
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return (sums.reshape(rows, cols, -1) / area[..., None]).astype(np.float32)


def mosaic_image(rect: tuple[int, int, int, int], colours: np.ndarray) -> np.ndarray:
    """(rows, cols, C) colours as a uint8 mosaic the size of `rect`."""
    x0, y0, x1, y1 = rect
    rows, cols = colours.shape[:2]
    ys, xs = cell_edges(y1 - y0, rows), cell_edges(x1 - x0, cols)
    cells = np.clip(np.rint(colours), 0, 255).astype(np.uint8)
    # widen the few rows first (a gather), then repeat whole rows: 7x faster than repeating
    # the full-size picture twice (a 430x560 face at 1080p: 1.0 -> 0.13 ms)
    wide = cells[:, np.repeat(np.arange(cols), np.diff(xs))]
    return np.repeat(wide, np.diff(ys), axis=0)


def paint_rect(out: np.ndarray, rect: tuple[int, int, int, int], colours: np.ndarray,
               mosaic: np.ndarray | None = None) -> None:
    """Paint (rows, cols, C) colours as a mosaic over `rect`, clipped to the frame, in place
    (`mosaic`: that picture already made)."""
    height, width = out.shape[:2]
    x0, y0, x1, y1 = rect
    if mosaic is None:
        mosaic = mosaic_image(rect, colours)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = mosaic[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


class TrackLock:
    """A cell protector (mosaic or block-wise generator) with one grid and held colours per
    face track: `(image, faces) -> image`, called once per frame in display order."""

    def __init__(self, cells: CellProtector, cfg: ProtectConfig):
        self.cells = cells
        self.cfg = cfg
        self._held: dict[int, _Held] = {}
        self._frame = 0

    def reset(self) -> None:
        """Forget every track (a new file or segment)."""
        self._held.clear()

    def geometry(self, track_id: int) -> tuple[tuple[int, int, int, int], int, int] | None:
        """(rect, rows, cols) of a track's grid, or None when the track has none."""
        held = self._held.get(track_id)
        return None if held is None else (held.rect, held.rows, held.cols)

    def __call__(self, image: np.ndarray, faces: Faces) -> np.ndarray:
        self._frame += 1
        frame = self._frame
        loose = faces.track_id < 0
        out = self.cells(image, faces[loose]) if loose.any() else image.copy()
        tracked = np.flatnonzero(~loose)
        to_sample: list[int] = []
        for k in tracked:
            tid = int(faces.track_id[k])
            box = faces.xyxy[k]
            region = grown_region(box, self.cfg.margin)
            held = self._held.get(tid)
            if held is None:
                s = block_size(float(box[2] - box[0]), self.cfg.blocks, self.cfg.min_block_px)
                rows = max(1, math.ceil((region[3] - region[1]) / s))
                cols = max(1, math.ceil((region[2] - region[0]) / s))
                held = self._held[tid] = _Held(region, rows, cols, np.empty(0), None, -1, frame)
            else:
                held.rect = self._moved(held, box, region)
                held.seen = frame
            if held.sampled < 0 or frame - held.sampled >= self.cfg.hold_frames:
                to_sample.append(tid)
        if to_sample:
            means = [sample_cells(image, self._held[t].rect, self._held[t].rows,
                                  self._held[t].cols) for t in to_sample]
            for tid, m, d in zip(to_sample, means, self.cells.deltas(means)):
                held = self._held[tid]
                shown = self._shown(held) if held.sampled >= 0 else None
                held.faded_from = shown if self.cfg.fade_frames > 0 else None
                held.colours, held.sampled, held.painted = m + d, frame, None
        for k in tracked:
            held = self._held[int(faces.track_id[k])]
            shown = self._shown(held)
            if held.faded_from is not None:  # fading: a new picture every frame
                paint_rect(out, held.rect, shown)
                continue
            if held.painted is None or held.painted[0] != held.rect:
                held.painted = (held.rect, mosaic_image(held.rect, shown))
            paint_rect(out, held.rect, shown, held.painted[1])
        if len(self._held) > 64 and frame % 64 == 0:
            self._held = {t: h for t, h in self._held.items() if frame - h.seen <= FORGET_AFTER}
        return out

    def _shown(self, held: _Held) -> np.ndarray:
        """The colours on screen this frame: the sample, faded in from the previous one."""
        if held.faded_from is None:
            return held.colours
        a = (self._frame - held.sampled + 1) / (self.cfg.fade_frames + 1)
        if a >= 1:
            held.faded_from = None
            return held.colours
        return held.faded_from + (held.colours - held.faded_from) * np.float32(a)

    @staticmethod
    def _moved(held: _Held, box: np.ndarray, region: tuple[int, int, int, int]
               ) -> tuple[int, int, int, int]:
        """The grid's rectangle on this frame: where it was, unless the face box is not wholly
        inside it or an edge is more than half a cell from the region's; then the region."""
        x0, y0, x1, y1 = held.rect
        inside = x0 <= box[0] and y0 <= box[1] and box[2] <= x1 and box[3] <= y1
        half_w, half_h = (x1 - x0) / held.cols / 2, (y1 - y0) / held.rows / 2
        near = (abs(region[0] - x0) <= half_w and abs(region[2] - x1) <= half_w
                and abs(region[1] - y0) <= half_h and abs(region[3] - y1) <= half_h)
        return held.rect if inside and near else region
