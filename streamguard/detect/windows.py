"""Track windows packed into the model's inputs, and what the model found in them.

A track window is a square around a face the detector expects (a track's box), cut turned
the way the face was last found upright (`TurnMemory.quarter_of`). Several share one input
of the model: each input is one model call, and a tracked face needs only to be seen again.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamguard.detect.geometry import (
    box_iou, halved, halvings, padded_crop, turn_image, unturn_boxes,
)

# A window: ((x0, y0, x1, y1) square on the frame, the expected box, quarter turns: -1 = a
# face upright but rolled, not turned)
Window = tuple[tuple[int, int, int, int], np.ndarray, int]


def packed(image: np.ndarray, windows: list[Window], side: int, turned_alone: bool = False,
           ) -> list[tuple[np.ndarray, list[Window]]]:
    """Windows packed into pictures of `side` px, one model input each: a window alone fills
    it, up to 4 share it 2 x 2 (at side 192 the model sees each at 96 px, a face at ~32 px;
    packed 3 x 3 a 24 px face, at ~21 px, was lost). Returns (canvas, windows) pairs.

    `turned_alone` (the detector sets it on dim frames): a face found turned has its window
    alone. Shared 2 x 2, a 110 px infrared face turned 135 degrees was found on 1 of 40
    frames, and was bare on 66 frames of the recall benchmark's infrared clip (23 alone)."""
    out = []
    if turned_alone:
        out = [_canvas(image, [w], 1, side) for w in windows if w[2] > 0]
        windows = [w for w in windows if w[2] <= 0]
    start = 0
    while start < len(windows):
        grid = 1 if len(windows) - start == 1 else 2
        group = windows[start:start + grid * grid]
        start += len(group)
        out.append(_canvas(image, group, grid, side))
    return out


def _canvas(image: np.ndarray, group: list[Window], grid: int, side: int,
            ) -> tuple[np.ndarray, list[Window]]:
    """One canvas: the windows of `group`, each turned, in a grid x grid layout."""
    cell = side // grid
    canvas = np.zeros((grid * cell, grid * cell, 3), np.uint8)
    cut = []
    for k, (square, expected, quarter) in enumerate(group):
        r, c = divmod(k, grid)
        # a window two or more cells wide is halved first (`halved`: OpenCV's fast path, a
        # 660 px window in 0.3 ms, not 1.8), cut to a multiple of what it is halved by;
        # the boxes map back through the square as cut
        x0, y0, x1, y1 = square
        times = halvings(x1 - x0, cell)
        x1 -= (x1 - x0) % (1 << times)
        y1 = y0 + (x1 - x0)
        cut.append(((x0, y0, x1, y1), expected, quarter))
        crop = turn_image(halved(padded_crop(image, x0, y0, x1, y1), times), max(quarter, 0))
        canvas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = cv2.resize(
            crop, (cell, cell), interpolation=cv2.INTER_AREA
            if crop.shape[0] > cell else cv2.INTER_LINEAR)
    return canvas, cut


def window_boxes(found_per_canvas, canvases,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes the packed windows found, mapped back to the frame: (xyxy, score, roll, the
    windows' quarter turns).

    A window only confirms its own track: of what it finds, it keeps the one box that
    overlaps the expected box best and is of a similar size (half to twice). A window never
    starts tracks of its own or lets a track's box grow away: textures seen up close cannot
    breed false faces.
    """
    boxes, scores, rolls, quarters = [], [], [], []
    for (xyxy, score, roll), (canvas, group) in zip(found_per_canvas, canvases):
        grid = 1 if len(group) == 1 else 2
        cell = canvas.shape[0] // grid
        best: dict[int, tuple[float, np.ndarray, float, float]] = {}
        for b, sc, rl in zip(xyxy, score, roll):
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            r, c = int(cy // cell), int(cx // cell)
            k = grid * r + c
            if not (0 <= r < grid and 0 <= c < grid) or k >= len(group):
                continue
            (x0, y0, x1, y1), expected, quarter = group[k]
            f = (x1 - x0) / cell
            local = unturn_boxes(np.clip(b - np.array([c, r, c, r]) * cell, 0, cell),
                                 max(quarter, 0), cell, cell)[0]
            found = (local * f + np.array([x0, y0, x0, y0])).astype(np.float32)
            ratio = (found[2] - found[0]) / max(expected[2] - expected[0], 1e-6)
            overlap = float(box_iou(found[None], expected[None].astype(np.float32))[0, 0])
            if 0.5 <= ratio <= 2 and overlap > 0.1 and overlap > best.get(k, (0.0,))[0]:
                best[k] = (overlap, found, float(sc), float(rl))
        for k, (_, found, sc, rl) in best.items():
            boxes.append(found)
            scores.append(sc)
            rolls.append(rl)
            quarters.append(max(group[k][2], 0))
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
            np.array(rolls, np.float32), np.array(quarters, np.int64))
