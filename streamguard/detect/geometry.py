"""Geometry the tiled detector works with: the tile grid and pyramid, crops that reach past the
frame (mirrored), box overlap, suppression of duplicates and face parts, the boxes of faces
cut by the frame's edge, and block means for telling a still picture. Pure functions of arrays.
"""

from __future__ import annotations

import cv2
import numpy as np


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


def bordered_tiles(grid: list[tuple[int, int, int, int]], width: int, height: int,
                   pad: float) -> list[tuple[int, int, int, int]]:
    """Tiles on the frame's border reaching `pad` of their side past it (`padded_crop`
    mirrors the frame there), so a face cut by the edge looks whole enough to be found."""
    return [(x0 - int(pad * (x1 - x0)) * (x0 == 0), y0 - int(pad * (y1 - y0)) * (y0 == 0),
             x1 + int(pad * (x1 - x0)) * (x1 == width), y1 + int(pad * (y1 - y0)) * (y1 == height))
            for x0, y0, x1, y1 in grid]


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


def halvings(length: int, target: int) -> int:
    """How many times `length` px can be halved and stay at least `target` px."""
    n = 0
    while length >> (n + 1) >= target:
        n += 1
    return n


def halved(image: np.ndarray, times: int) -> np.ndarray:
    """`image` area-averaged by 2, `times` times over, an odd last row or column dropped
    each time: a pixel (x, y) of the result covers x * 2**times .. (x + 1) * 2**times.
    Halving is OpenCV's fast path (a 720p frame in 0.13 ms, where a factor of 3 or more
    takes 0.5-1.2 ms)."""
    for _ in range(times):
        h, w = image.shape[:2]
        h, w = h - h % 2, w - w % 2
        image = cv2.resize(image[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return image


def within_frame(tile: tuple[int, int, int, int], width: int, height: int,
                 ) -> tuple[int, int, int, int]:
    """A border tile cut back to the frame (not mirrored past its edge)."""
    x0, y0, x1, y1 = tile
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def near_edge(xyxy: np.ndarray, width: int, height: int, share: float = 0.1) -> np.ndarray:
    """(N,) bool: boxes within `share` of their size of the frame's edge, or across it."""
    side = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) * share
    return ((xyxy[:, 0] < side) | (xyxy[:, 1] < side) | (xyxy[:, 2] > width - side)
            | (xyxy[:, 3] > height - side))


def edge_boxes(xyxy: np.ndarray, score: np.ndarray, width: int, height: int,
               growth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tidy the boxes the mirrored borders produce: (xyxy, score, the indices kept).

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
    xyxy, score, index = xyxy[inside], score[inside], np.flatnonzero(inside)
    cut = (xyxy[:, 0] < 0) | (xyxy[:, 1] < 0) | (xyxy[:, 2] > width) | (xyxy[:, 3] > height)
    if not cut.any():
        return xyxy, score, index
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
    return xyxy[keep], score[keep], index[keep]


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


def block_means(image: np.ndarray, block: int) -> np.ndarray:
    """Mean colour of each whole `block` x `block` square of the image (uint8, rounded; the
    last partial row and column of blocks dropped): OpenCV's whole-factor area path."""
    h, w = image.shape[:2]
    if h < block or w < block:
        return np.asarray(image).copy()
    if block & (block - 1) == 0:  # a power of two: halved, OpenCV's fast path (4x faster)
        return halved(image, block.bit_length() - 1)
    return cv2.resize(image[:h - h % block, :w - w % block], (w // block, h // block),
                      interpolation=cv2.INTER_AREA)


def scaled_about_centre(xyxy: np.ndarray, factor) -> np.ndarray:
    """(N, 4) float32 boxes scaled about their centres by `factor` (a number, or (N,))."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    factor = np.broadcast_to(np.asarray(factor, np.float32), (len(xyxy),))[:, None]
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    half = (xyxy[:, 2:] - xyxy[:, :2]) / 2 * factor
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


# cv2.rotate's code for each quarter turn clockwise (0: the image as it is)
_ROTATE = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}


def turn_image(image: np.ndarray, quarter: int) -> np.ndarray:
    """The image turned `quarter` quarter turns clockwise (a copy; the image itself for 0)."""
    quarter %= 4
    return image if not quarter else cv2.rotate(np.asarray(image), _ROTATE[quarter])


def unturn_boxes(xyxy: np.ndarray, quarter: int, width: int, height: int) -> np.ndarray:
    """Boxes found in a (width x height) picture turned `quarter` quarter turns clockwise
    (`turn_image`), mapped back onto the picture as it was: (N, 4) float32."""
    quarter %= 4
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    if quarter == 0:
        return b.copy()
    x0, y0, x1, y1 = b.T
    if quarter == 1:  # turned (x, y) = (height - y, x)
        out = (y0, height - x1, y1, height - x0)
    elif quarter == 2:  # turned (x, y) = (width - x, height - y)
        out = (width - x1, height - y1, width - x0, height - y0)
    else:  # turned (x, y) = (y, width - x)
        out = (width - y1, x0, width - y0, x1)
    return np.stack(out, axis=1).astype(np.float32)

