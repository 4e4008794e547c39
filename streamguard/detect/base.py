"""Face detection: the Detector protocol, a registry, overlapping tiles and NMS.

A detector turns an (H, W, 3) uint8 RGB image into `Faces`. Whole frames are squashed to a
small model input, so faces under ~8 % of the frame width vanish; the tiled pass re-runs the
model on overlapping tiles (every `tile_every`-th frame) and merges everything with NMS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from streamguard.config import DetectConfig
from streamguard.frames import Faces
from streamguard.registry import Registry

# A box model: RGB image -> (xyxy (N, 4) float32 in image pixels, score (N,) float32)
BoxModel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Detector(Protocol):
    def detect(self, image: np.ndarray, index: int, around: np.ndarray | None = None) -> Faces:
        """Faces in an RGB image; `index` is the frame number (decides the tiled pass);
        `around` (N, 4): where tracked faces are expected (worth a closer look)."""

    def close(self) -> None: ...


DETECTORS: Registry[Callable[[DetectConfig], Detector]] = Registry("detector")
register_detector = DETECTORS.register


def tile_grid(
    width: int, height: int, max_side: int, overlap: float, min_overlap_px: float = 0.0
) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles (x0, y0, x1, y1) covering the frame, each side <= max_side.

    Neighbours share at least `overlap` of a tile's side and at least `min_overlap_px` (a face
    up to that size lies whole in some tile: set it to the largest face the full-frame pass
    can miss). Along each axis: the fewest tiles that allow both, each as small as they allow.
    Returns [] when one tile would be the whole frame (the full-frame pass already covers it).
    """

    def split(length: int) -> list[tuple[int, int]]:
        if length <= max_side:
            return [(0, length)]
        n = 2
        while True:
            # the smallest side n tiles can have with both overlaps (n s - L >= (n-1) o)
            size = max(length / (n - (n - 1) * overlap),
                       (length + (n - 1) * min_overlap_px) / n)
            if size <= max_side or size >= length:
                break
            n += 1
        size = min(size, length)
        step = (length - size) / (n - 1)
        spans = [(int(round(i * step)), int(round(i * step + size))) for i in range(n)]
        spans[-1] = (spans[-1][0], length)
        return spans

    xs, ys = split(width), split(height)
    if len(xs) == 1 and len(ys) == 1:
        return []
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def tile_pyramid(width: int, height: int, max_side: int, overlap: float,
                 full_frame_min_face: float) -> list[tuple[int, int, int, int]]:
    """The tiles of every level, finest first, so that a face too small for the full-frame
    pass lies whole in some tile that sees it.

    `full_frame_min_face`: the largest face the full-frame pass can miss, as a share of the
    frame's longer side (the same share holds for a tile and its longer side). One level of
    `max_side` tiles whose seams are that wide does it while the seams stay under 40 % of a
    tile; past that (4K), levels of twice the side are added, each level's seams as wide as
    the largest face the level above it can miss.
    """
    longer = max(width, height)
    sides = [max_side]
    while full_frame_min_face * longer > 0.4 * sides[-1] and 2 * sides[-1] < longer:
        sides.append(2 * sides[-1])
    tiles: list[tuple[int, int, int, int]] = []
    for k, side in enumerate(sides):
        above = sides[k + 1] if k + 1 < len(sides) else longer
        tiles += tile_grid(width, height, side, overlap, full_frame_min_face * above)
    return tiles


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


def padded_crop(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """image[y0:y1, x0:x1] where the window may reach past the frame: the missing part is the
    frame mirrored at its edge (a face cut by the edge gets its mirror half). A window inside
    the frame is a view, not a copy (OpenCV resizes views as they are)."""
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    crop = image[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if not any(pads):
        return np.asarray(crop)
    ch, cw = crop.shape[:2]
    # a mirror can reach at most one crop side (less one pixel) at a time
    top, bottom = min(pads[0], ch - 1), min(pads[1], ch - 1)
    left, right = min(pads[2], cw - 1), min(pads[3], cw - 1)
    out = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    if out.shape[:2] != (y1 - y0, x1 - x0):  # a very thin strip: fill the rest with edges
        out = cv2.copyMakeBorder(out, pads[0] - top, pads[1] - bottom, pads[2] - left,
                                 pads[3] - right, cv2.BORDER_REPLICATE)
    return out


def edge_boxes(xyxy: np.ndarray, score: np.ndarray, width: int, height: int,
               growth: float) -> tuple[np.ndarray, np.ndarray]:
    """Tidy the boxes the mirrored borders produce.

    - A box wholly or mostly (over 3/4) outside the frame is a mirror image: dropped (a half
      face completed by its mirror straddles the edge about evenly).
    - A box crossing the edge that covers a face also found whole inside the frame (half of
      that face's box or more) is that face plus its mirror image: dropped, the whole face's
      box is the right one.
    - A box whose centre lies outside or near the edge is a half face completed by its
      mirror: the mirror half is narrower than a face and boxed tighter, so the box grows by
      `growth` per side to cover the real face's part.
    - A box with its centre well inside is a mostly visible face, possibly doubled by its
      mirror and boxed up to twice too wide: across the cut it is narrowed to its extent
      inside the frame (faces are about square), centred.
    """
    inside = (xyxy[:, 2] > 0) & (xyxy[:, 0] < width) & (xyxy[:, 3] > 0) & (xyxy[:, 1] < height)
    xyxy, score = xyxy[inside], score[inside]
    cut = (xyxy[:, 0] < 0) | (xyxy[:, 1] < 0) | (xyxy[:, 2] > width) | (xyxy[:, 3] > height)
    if not cut.any():
        return xyxy, score
    whole = xyxy[~cut]
    keep = np.ones(len(xyxy), bool)
    for i in np.flatnonzero(cut):
        box = xyxy[i]
        if len(whole):
            lt = np.maximum(whole[:, :2], box[:2])
            rb = np.minimum(whole[:, 2:], box[2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            area = np.prod(whole[:, 2:] - whole[:, :2], axis=1)
            if (inter >= 0.5 * area).any():
                keep[i] = False
                continue
        size = box[2:] - box[:2]
        centre = (box[:2] + box[2:]) / 2
        # share of the box inside the frame along the axes it is cut on
        inside_share = min((min(box[2], width) - max(box[0], 0)) / size[0],
                           (min(box[3], height) - max(box[1], 0)) / size[1])
        if inside_share < 0.25:
            keep[i] = False  # mostly outside: the mirror image of a face inside
            continue
        near = 0.25 * size
        if (centre[0] < near[0] or centre[1] < near[1] or centre[0] > width - near[0]
                or centre[1] > height - near[1]):
            # the centre outside or near the edge: a half face and its mirror
            xyxy[i] = box + np.concatenate([-size, size]) * growth
            continue
        # extent inside the frame along each axis the box is cut on
        inside_y = min(box[3], height) - max(box[1], 0)
        inside_x = min(box[2], width) - max(box[0], 0)
        if box[1] < 0 or box[3] > height:  # cut at the top or bottom: narrow its width
            half = min(size[0], inside_y) / 2
            xyxy[i, [0, 2]] = centre[0] - half, centre[0] + half
        if box[0] < 0 or box[2] > width:  # cut at the left or right: narrow its height
            half = min(size[1], inside_x) / 2
            xyxy[i, [1, 3]] = centre[1] - half, centre[1] + half
    return xyxy[keep], score[keep]


def drop_parts(xyxy: np.ndarray, inside: float = 0.9, larger: float = 2.0) -> np.ndarray:
    """Indices of boxes to keep: a box lying mostly (`inside` of its area) within one at least
    `larger` times its area is a part of that face (an eye, a mouth a tile found alone)."""
    if len(xyxy) < 2:
        return np.arange(len(xyxy))
    area = np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1)
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)  # (i, j): i's area inside j
    part = (inter >= inside * area[:, None]) & (area[None, :] >= larger * area[:, None])
    return np.flatnonzero(~part.any(axis=1))


@dataclass
class _Looked:
    """A tile as it was when it was last looked at: its picture in block means, what the model
    found in it, and how many turns since were skipped because it had not changed."""

    means: np.ndarray
    found: tuple[np.ndarray, np.ndarray]
    skipped: int = 0


def block_means(image: np.ndarray, block: int) -> np.ndarray:
    """Mean colour of each whole `block` x `block` square of the image (uint8; the last
    partial row and column of blocks dropped): OpenCV's whole-factor area path."""
    h, w = image.shape[:2]
    if h < block or w < block:
        return np.asarray(image).copy()
    return cv2.resize(image[:h - h % block, :w - w % block], (w // block, h // block),
                      interpolation=cv2.INTER_AREA)


class TiledDetector:
    """Full-frame pass every frame, plus overlapping tiles spread over `tile_every` frames,
    plus a window around each track the full-frame pass cannot see.

    - Each frame runs ceil(tiles / tile_every) tiles in round-robin order, so every tile is
      revisited at least every `tile_every` frames while the per-frame cost stays even (no
      latency spike every k-th frame, which matters for live streams). Tiles on the frame's
      border reach `edge_padding` of their side past it, mirrored, so faces cut by the edge
      are found.
    - Track windows (`around`): a square of `window_scale` face sizes around each small
      (under ~12 % of the frame width) or edge track the full-frame pass did not find this
      frame, mirrored past the edge; up to four windows are packed into one image.
    - Tiles and windows go to the model in one call where it takes a batch.
    - A tile whose picture has not changed since it was last looked at (`still_tiles`) gets
      what was found there then, without a model call, for a bounded number of turns.
    """

    # px, the picture track windows are packed in (1 or 2 x 2): the full-range model's input
    # side, so the windows are resampled once, straight to what the model sees
    WINDOW_CANVAS = 192
    FULL_FRAME_SEES = 0.12  # faces wider than this share of the frame: the full-frame pass
    # The largest face (share of the frame's longer side) the full-frame pass can miss, so
    # tiles overlap by at least that much: on pasted faces it found 12 of 15 at 140 px and all
    # from 160 px at 1080p (0.083), all from 120 px at 720p (0.094); under it, a face on a
    # tile seam was found by neither (a 140 px face bare for 90 frames at 1080p)
    FULL_FRAME_MIN_FACE = 0.09
    EDGE_GROWTH = 0.3  # per side, for boxes of faces found across the frame's edge
    THUMBNAIL_SIDE = 1280  # px, longer side of the full-frame pass's picture of a planar frame
    # a still tile: no STILL_BLOCK px block's mean moved by more than STILL_LEVELS in any
    # colour since the tile was looked at. H.264 noise on a still background moves 8 px block
    # means by 0-2 levels (99th percentile <= 5 on the real clips); a 24 px face appearing
    # moves several blocks by tens of levels
    STILL_BLOCK = 8
    STILL_LEVELS = 6

    def __init__(self, full_frame: BoxModel, tiles: BoxModel, cfg: DetectConfig,
                 helper_tiles: BoxModel | None = None):
        """`helper_tiles`: a second instance of the tiles model. Given, the full-frame pass
        and a share of the tiles run on a helper thread while the caller's thread runs the
        rest (the models release the GIL; the results are exactly those run in turn)."""
        self._full_frame = full_frame
        self._tiles = tiles
        self._helper_tiles = helper_tiles
        self.cfg = cfg
        self._helper = None
        if helper_tiles is not None:
            from concurrent.futures import ThreadPoolExecutor

            self._helper = ThreadPoolExecutor(1, thread_name_prefix="streamguard-full-frame")
        self._grid_for: tuple[int, int] | None = None
        self._grid: list[tuple[int, int, int, int]] = []
        self._window_turn = 0  # where the next frame's windows start, when they take turns
        self._looked: dict[tuple[int, int, int, int], _Looked] = {}  # per tile (still_tiles)

    def _grid_of(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        if self._grid_for != (width, height):
            grid = tile_pyramid(width, height, self.cfg.tile_max_side, self.cfg.tile_overlap,
                                self.FULL_FRAME_MIN_FACE)
            pad = self.cfg.edge_padding
            self._grid = [(x0 - int(pad * (x1 - x0)) * (x0 == 0),
                           y0 - int(pad * (y1 - y0)) * (y0 == 0),
                           x1 + int(pad * (x1 - x0)) * (x1 == width),
                           y1 + int(pad * (y1 - y0)) * (y1 == height))
                          for x0, y0, x1, y1 in grid]
            self._grid_for = (width, height)
            self._looked.clear()
        return self._grid

    def tiles_for(self, width: int, height: int, index: int) -> list[tuple[int, int, int, int]]:
        """The tiles frame `index` runs (border tiles reach past the frame)."""
        grid = self._grid_of(width, height)
        every = self.cfg.tile_every
        if not every or not grid:
            return []
        per_frame = -(-len(grid) // every)
        start = (index % every) * per_frame
        return grid[start:start + per_frame]

    def windows_for(self, width: int, height: int, around: np.ndarray | None,
                    seen: np.ndarray | None = None,
                    ) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """(square window, expected box) around each expected box the full-frame pass cannot
        see: small faces and faces at the frame's edge, unless the full-frame pass found a
        face there this frame (`seen`: its boxes; edge faces always get their window, where
        the mirrored border completes them)."""
        if around is None or not len(around) or not self.cfg.track_windows:
            return []
        expected = np.asarray(around, np.float64).reshape(-1, 4)
        confirmed = np.zeros(len(expected), bool)
        if seen is not None and len(seen):
            confirmed = box_iou(expected.astype(np.float32), seen).max(axis=1) >= 0.5
        out = []
        for box, found in zip(expected, confirmed):
            x0, y0, x1, y1 = box
            side = max(x1 - x0, y1 - y0)
            at_edge = x0 < 0.1 * side or y0 < 0.1 * side or x1 > width - 0.1 * side \
                or y1 > height - 0.1 * side
            if not at_edge and (found or side >= self.FULL_FRAME_SEES * width):
                continue
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                continue
            half = max(side * self.cfg.window_scale, 48) / 2
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            out.append(((int(cx - half), int(cy - half), int(cx + half), int(cy + half)), box))
        return out

    def _take_turns(self, windows: list) -> list:
        """At most `max_windows` windows this frame: with more, they rotate in track order
        (tracks keep their order frame to frame), so each is looked at every
        ceil(n / max_windows) frames."""
        cap = self.cfg.max_windows
        if not cap or len(windows) <= cap:
            return windows
        start = self._window_turn % len(windows)
        self._window_turn = start + cap
        return (windows[start:] + windows[:start])[:cap]

    def _window_canvases(self, image: np.ndarray, windows) -> list[tuple[np.ndarray, list]]:
        """Windows packed into pictures of WINDOW_CANVAS px, one detector input each: a
        window alone fills it, up to 4 share it 2 x 2 (the model sees each at 96 px, a face
        at ~32 px; packed 3 x 3 a 24 px face, at ~21 px, was lost). Returns (canvas, windows)
        pairs."""
        out = []
        start = 0
        while start < len(windows):
            left = len(windows) - start
            grid = 1 if left == 1 else 2
            group = windows[start:start + grid * grid]
            start += len(group)
            cell = self.WINDOW_CANVAS // grid
            canvas = np.zeros((grid * cell, grid * cell, 3), np.uint8)
            for k, ((x0, y0, x1, y1), _) in enumerate(group):
                r, c = divmod(k, grid)
                crop = padded_crop(image, x0, y0, x1, y1)
                canvas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = cv2.resize(
                    crop, (cell, cell), interpolation=cv2.INTER_AREA
                    if crop.shape[0] > cell else cv2.INTER_LINEAR)
            out.append((canvas, group))
        return out

    def _window_boxes(self, found_per_canvas, canvases) -> tuple[np.ndarray, np.ndarray]:
        """Boxes the packed windows found, mapped back to the frame.

        A window only confirms its own track: of what it finds, it keeps the one box that
        overlaps the expected box best and is of a similar size (half to twice). A window never
        starts tracks of its own or lets a track's box grow away: textures seen up close
        cannot breed false faces.
        """
        boxes, scores = [], []
        for (xyxy, score), (canvas, group) in zip(found_per_canvas, canvases):
            grid = 1 if len(group) == 1 else 2
            cell = canvas.shape[0] // grid
            best: dict[int, tuple[float, np.ndarray, float]] = {}
            for b, sc in zip(xyxy, score):
                cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                r, c = int(cy // cell), int(cx // cell)
                k = grid * r + c
                if not (0 <= r < grid and 0 <= c < grid) or k >= len(group):
                    continue
                (x0, y0, x1, y1), expected = group[k]
                f = (x1 - x0) / cell
                local = np.clip(b - np.array([c, r, c, r]) * cell, 0, cell)
                found = (local * f + np.array([x0, y0, x0, y0])).astype(np.float32)
                ratio = (found[2] - found[0]) / max(expected[2] - expected[0], 1e-6)
                overlap = float(box_iou(found[None], expected[None].astype(np.float32))[0, 0])
                if 0.5 <= ratio <= 2 and overlap > 0.1 and overlap > best.get(k, (0.0,))[0]:
                    best[k] = (overlap, found, float(sc))
            for _, found, sc in best.values():
                boxes.append(found)
                scores.append(sc)
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return np.array(boxes, np.float32), np.array(scores, np.float32)

    def _run_tiles_model(self, images: list[np.ndarray], model: BoxModel | None = None,
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The tiles model (or `model`) on each image: in one call where it takes a batch."""
        model = model or self._tiles
        if not images:
            return []
        batch = getattr(model, "batch", None)
        if batch is not None:
            return batch(images)
        return [model(img) for img in images]

    def _full_frame_pass(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole frame through the full-frame model. A frame kept in its planes
        (`frames.PlanarImage`) hands over a picture of at most THUMBNAIL_SIDE px, converted
        from its planes by OpenCV (the model squashes its input to under 200 px anyway). At
        640 px a fast face entering through an edge was boxed late in the recall tests: up to
        1280 px the model sees what the RGB path shows it."""
        thumbnail = getattr(image, "thumbnail", None)
        if thumbnail is None:
            return self._full_frame(image)
        small, scale = thumbnail(self.THUMBNAIL_SIDE)
        xyxy, score = self._full_frame(small)
        return xyxy * np.float32(scale), score

    # relative cost of the detector inputs, for sharing them between the two threads: a
    # tile is one model call; the full frame also shrinks a whole frame first; a window
    # picture also crops and shrinks up to four windows
    TILE_COST, FULL_FRAME_COST, CANVAS_COST = 1.0, 1.1, 1.35

    def _helper_share(self, tiles: int, canvases: int) -> int:
        """How many tiles the helper thread takes, on top of the full-frame pass and the track
        windows (which wait for the full-frame pass): the split that finishes soonest."""
        own = self.FULL_FRAME_COST + self.CANVAS_COST * canvases
        return min(range(tiles + 1), key=lambda k: max(own + k * self.TILE_COST,
                                                       (tiles - k) * self.TILE_COST))

    def _windows_pass(self, image: np.ndarray, around: np.ndarray | None, seen: np.ndarray,
                      model: BoxModel | None = None) -> tuple[list, list]:
        """The track windows that the full-frame pass's boxes (`seen`) leave to look at, packed
        into pictures and run: (canvases, what the model found in each)."""
        height, width = image.shape[:2]
        canvases = self._window_canvases(image, self._take_turns(
            self.windows_for(width, height, around, seen)))
        return canvases, self._run_tiles_model([canvas for canvas, _ in canvases], model)

    def _still(self, tiles: list, crops: list) -> tuple[list, list]:
        """(block means of each crop, or None when not kept; what was found in each tile that
        has not changed since it was last looked at, or None: the tiles to look at)."""
        if not self.cfg.still_tiles:
            return [None] * len(tiles), [None] * len(tiles)
        means, again = [], []
        for tile, crop in zip(tiles, crops):
            now = block_means(crop, self.STILL_BLOCK)
            last = self._looked.get(tile)
            still = (last is not None and last.skipped < self.cfg.still_tiles
                     and last.means.shape == now.shape
                     and cv2.norm(last.means, now, cv2.NORM_INF) <= self.STILL_LEVELS)
            if still:
                last.skipped += 1
            means.append(now)
            again.append(last.found if still else None)
        return means, again

    def detect(self, image: np.ndarray, index: int, around: np.ndarray | None = None) -> Faces:
        height, width = image.shape[:2]
        tiles = self.tiles_for(width, height, index)
        crops = [padded_crop(image, *tile) for tile in tiles]
        means, found_again = self._still(tiles, crops)
        look = [i for i, again in enumerate(found_again) if again is None]
        (xyxy, score), (canvases, in_windows), looked = self._look_at_tiles(
            image, [crops[i] for i in look], around, width, height)
        found = list(found_again)
        for i, result in zip(look, looked):
            found[i] = result
            if means[i] is not None:
                self._looked[tiles[i]] = _Looked(means[i], result)
        boxes, scores = [xyxy], [score]
        found += in_windows
        for (x0, y0, _, _), (t_xyxy, t_score) in zip(tiles, found):
            boxes.append(t_xyxy + np.array([x0, y0, x0, y0], np.float32))
            scores.append(t_score)
        if canvases:
            w_xyxy, w_score = self._window_boxes(found[len(tiles):], canvases)
            boxes.append(w_xyxy)
            scores.append(w_score)
        xyxy = np.concatenate(boxes).astype(np.float32)
        score = np.concatenate(scores).astype(np.float32)
        xyxy, score = edge_boxes(xyxy, score, width, height, self.EDGE_GROWTH)
        keep = nms(xyxy, score, self.cfg.nms_iou)
        xyxy, score = xyxy[keep], score[keep]
        keep = drop_parts(xyxy)
        return Faces.from_boxes(xyxy[keep], score[keep])

    def _look_at_tiles(self, image: np.ndarray, crops: list, around: np.ndarray | None,
                       width: int, height: int):
        """The full-frame pass, the track windows and the model on `crops`:
        ((xyxy, score), (canvases, found in each), found in each crop)."""
        if self._helper is not None and crops:
            # the helper thread: the full-frame pass, then the track windows (they depend on
            # it), then a share of the tiles; this thread: the other tiles. The windows' count
            # is not known before the full-frame pass: at most what the tracks ask for.
            cap = self.cfg.max_windows
            asked = len(self.windows_for(width, height, around))
            asked = min(asked, cap) if cap else asked
            k = self._helper_share(len(crops), -(-asked // 4))

            def helper_work():
                full = self._full_frame_pass(image)
                windows = self._windows_pass(image, around, full[0], self._helper_tiles)
                return full, windows, self._run_tiles_model(crops[:k], self._helper_tiles)

            helper = self._helper.submit(helper_work)
            mine = self._run_tiles_model(crops[k:])
            (xyxy, score), (canvases, in_windows), found = helper.result()
            found += mine
        else:
            xyxy, score = self._full_frame_pass(image)
            found = self._run_tiles_model(crops)
            canvases, in_windows = self._windows_pass(image, around, xyxy)
        return (xyxy, score), (canvases, in_windows), found

    def close(self) -> None:
        """Stop the helper thread (a detection hung in native code is left behind)."""
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)


def count_tiles(width: int, height: int, cfg: DetectConfig) -> int:
    """Tiles per tiled pass at this frame size (for reports and benchmarks)."""
    return len(tile_pyramid(width, height, cfg.tile_max_side, cfg.tile_overlap,
                            TiledDetector.FULL_FRAME_MIN_FACE))


