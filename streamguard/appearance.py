"""A face's look, to hold its track where the detector loses it.

The detector blinks longest on the faces hardest to see: turned in the image plane, blurred
by motion, in the dark. The face is still there, and still looks as it did when it was last
found. A track keeps a small grey picture of its face from its last detection (`template`);
on a frame where the detector misses it, the picture is searched for around the track's
predicted box (`follow`, normalized cross-correlation): found alike, the track is held
there, following the face, instead of ending after `track.max_missed` frames.

Grey from the luma plane of a planar frame, from the RGB pixels otherwise: both are the
frame's own brightness, so the look does not depend on how the frame is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamguard.frames import PlanarImage

SIDE = 32  # px: a face's picture, whatever its size (faces from ~40 px are protected)
SEARCH = 0.5  # of the box's size, each side: how far the face may have moved since
FLAT = 6.0  # grey levels: a picture with less spread has no look to follow (a flat patch)


def _shrunk(pic: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`pic` at `size` (w, h): averaged down by a whole factor (OpenCV's fast path), then
    resampled the rest of the way (an area average at any other factor cost 60 us)."""
    h, w = pic.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        pic = cv2.resize(pic[:h - h % k, :w - w % k], (w // k, h // k),
                         interpolation=cv2.INTER_AREA)
    return cv2.resize(pic, size, interpolation=cv2.INTER_LINEAR)


def _grey(image, x0: int, y0: int, x1: int, y1: int, size: tuple[int, int]) -> np.ndarray:
    """The region shrunk to `size` (w, h), in grey levels, float32 (shrunk first, so only
    the small picture is converted)."""
    if isinstance(image, PlanarImage):
        return _shrunk(image.y[y0:y1, x0:x1], size).astype(np.float32)
    small = _shrunk(np.asarray(image[y0:y1, x0:x1]), size)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _spread(pic: np.ndarray) -> float:
    return float(cv2.meanStdDev(pic)[1][0, 0])


def _inside(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


def template(image, box: np.ndarray) -> np.ndarray | None:
    """The face's grey picture at `box` (SIDE x SIDE, float32), or None where the box is not
    inside the frame or the picture is flat."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return None  # cut by the frame's edge: the edge tracks have their own hold
    inside = _inside(box, width, height)
    if inside is None:
        return None
    pic = _grey(image, *inside, (SIDE, SIDE))
    return pic if _spread(pic) >= FLAT else None


def follow(image, box: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, float]:
    """Where the face's picture (`template`) is most alike around `box`: (the box moved
    there, same size; the normalized cross-correlation there, -1 to 1, or 0 where nothing
    could be compared)."""
    height, width = image.shape[:2]
    w, h = box[2] - box[0], box[3] - box[1]
    if w < 2 or h < 2:
        return box, 0.0
    region = _inside(box + np.array([-SEARCH * w, -SEARCH * h, SEARCH * w, SEARCH * h]),
                     width, height)
    if region is None:
        return box, 0.0
    x0, y0, x1, y1 = region
    sx, sy = SIDE / w, SIDE / h  # the region at the template's scale
    size = (max(1, round((x1 - x0) * sx)), max(1, round((y1 - y0) * sy)))
    if size[0] < SIDE or size[1] < SIDE:
        return box, 0.0
    small = _grey(image, x0, y0, x1, y1, size)
    if _spread(small) < FLAT:
        return box, 0.0
    alike = np.nan_to_num(cv2.matchTemplate(small, face, cv2.TM_CCOEFF_NORMED), nan=0.0)
    _, best, _, (bx, by) = cv2.minMaxLoc(alike)
    nx, ny = x0 + bx / sx, y0 + by / sy
    return np.array([nx, ny, nx + w, ny + h], np.float64), float(best)
