"""What runs around the BlazeFace models, whatever runs the models (LiteRT in
`detect.blazeface`, torch in `detect.torch_blazeface`): MediaPipe's steps, written out.

- the input: the image letterboxed into the model's square input (aspect kept, black border),
  area-averaged and scaled to [-1, 1] (`letterbox`);
- the anchors: MediaPipe's SSD anchors for each model (`SsdAnchorsCalculator` options of
  `face_detection_{short,full}_range.pbtxt`; `ssd_anchors`);
- the boxes: `TensorsToDetectionsCalculator` (x, y, w, h regressed around each anchor, score
  = sigmoid of the logit clipped to +-100) and MediaPipe's weighted non-maximum suppression
  (IoU 0.3, boxes averaged by score) (`decode`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamguard.detect.geometry import box_iou, halved, halvings


@dataclass(frozen=True)
class ModelSpec:
    input_side: int
    strides: tuple[int, ...]
    interpolated_anchor: bool  # a second anchor per scale (interpolated_scale_aspect_ratio 1)


SPECS = {
    "short_range": ModelSpec(128, (8, 16, 16, 16), True),
    "full_range": ModelSpec(192, (4,), False),
}
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for both face models
SCORE_CLIP = 100.0


def ssd_anchors(spec: ModelSpec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the model's output order.

    With `fixed_anchor_size` every anchor is 1 x 1, so only the centres matter. Consecutive
    layers of the same stride share one grid: their anchors are interleaved per cell.
    """
    centres = []
    layer = 0
    while layer < len(spec.strides):
        stride = spec.strides[layer]
        per_cell = 0
        while layer < len(spec.strides) and spec.strides[layer] == stride:
            per_cell += 2 if spec.interpolated_anchor else 1
            layer += 1
        cells = -(-spec.input_side // stride)
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells,
                             indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(xyxy: np.ndarray, score: np.ndarray, iou: float,
                 roll: np.ndarray | None = None):
    """MediaPipe's WEIGHTED suppression: the best remaining box and every box overlapping it
    by more than `iou` merge into their score-weighted average, which keeps the best score.
    Returns (xyxy, score), and with `roll` given the best box's roll too."""
    order = np.argsort(-score, kind="stable")
    xyxy, score = xyxy[order], score[order]
    roll = None if roll is None else roll[order]
    out_boxes, out_scores, out_roll = [], [], []
    remaining = np.arange(len(score))
    while len(remaining):
        top = remaining[0]
        overlap = box_iou(xyxy[top:top + 1], xyxy[remaining])[0]
        group = remaining[overlap > iou]
        if len(group) == 0:  # degenerate (zero-area) box: keep it alone
            group = remaining[:1]
        weights = score[group]
        out_boxes.append((xyxy[group] * weights[:, None]).sum(0) / weights.sum())
        out_scores.append(score[top])
        if roll is not None:
            out_roll.append(roll[top])
        remaining = remaining[~np.isin(remaining, group)]
    boxes = np.array(out_boxes, np.float32).reshape(-1, 4)
    scores = np.array(out_scores, np.float32).reshape(-1)
    if roll is None:
        return boxes, scores
    return boxes, scores, np.array(out_roll, np.float32).reshape(-1)


def letterbox(image: np.ndarray, side: int, out: np.ndarray) -> tuple[float, float, float]:
    """Fit `image` into the square `out` (float32, [-1, 1]) centred, aspect kept; returns
    (scale, pad_x, pad_y): model pixel = image pixel * scale + pad."""
    h, w = image.shape[:2]
    k = max(h, w) // side
    if k >= 4:
        # a whole frame: halved while it stays at least the model's side (OpenCV's fast
        # path: a 720p frame in 0.2 ms, 1 ms by a whole factor of 6 at once), the last odd
        # row or column dropped each time, so boxes keep their coordinates
        times = halvings(max(h, w), side)
        image, k = halved(image, times), 1 << times
    elif k == 3:
        # area-averaged by a whole factor first, dropping the last < k rows and columns.
        # Tiles (k = 2 or 3) are not halved: their small faces score about the threshold,
        # and halved, a 60 px corner face of the registry's corpus was found 43 frames late
        # (its scores moved by +-0.05 either way); 2x then bilinear lost faces on 5-11 more
        # frames per clip of the recall benchmark's dark and blurred clips at 720p
        image = cv2.resize(image[:h - h % k, :w - w % k], (w // k, h // k),
                           interpolation=cv2.INTER_AREA)
    else:
        k = 1
    h, w = image.shape[:2]
    scale = side / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (w, h):
        small = image
    elif scale < 1:
        # area-averaged: bilinear sampling drops small faces MediaPipe's own pipeline finds
        # (a 24 px face in a 522 px tile: never found bilinear, every frame area-averaged).
        # In float: OpenCV averages a 418 px tile by a fractional factor in 0.53 ms as
        # float, 0.9 ms as bytes (and the model takes floats: no rounding on the way)
        small = cv2.resize(image.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    px, py = (side - nw) // 2, (side - nh) // 2
    out.fill(-1.0)
    np.multiply(small, np.float32(2 / 255), out=out[py:py + nh, px:px + nw],
                dtype=np.float32)
    out[py:py + nh, px:px + nw] -= 1
    return scale / k, px, py


def score_logits(min_score: float, low_score: float | None = None,
                 ) -> tuple[float, float | None]:
    """The model-output logits of `min_score` and of `low_score` (`decode`'s `min_logit` and
    `low_logit`); the latter None unless it lies under `min_score`."""
    low = None if low_score is None or low_score >= min_score else _logit(low_score)
    return _logit(min_score), low


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def decode(logits: np.ndarray, reg: np.ndarray, anchors: np.ndarray, side: int,
           min_logit: float, fit: tuple[float, float, float], low_logit: float | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's model outputs -> (xyxy in image pixels, score, roll): MediaPipe's
    `TensorsToDetectionsCalculator` and weighted suppression. `logits` (N,), `reg` (N, 16)
    around `anchors` (N, 2); `fit`: the letterbox's (scale, pad_x, pad_y).

    `low_logit` (under `min_logit`): the unsure finds from it up to `min_logit` come too,
    suppressed among themselves, after the sure ones, less those on a sure box: the sure
    boxes are exactly what they are without them."""
    clipped = np.clip(logits, -SCORE_CLIP, SCORE_CLIP)
    xyxy, score, roll = _suppressed(clipped, reg, anchors, side, clipped >= min_logit)
    if low_logit is not None and low_logit < min_logit:
        low = _suppressed(clipped, reg, anchors, side,
                          (clipped >= low_logit) & (clipped < min_logit))
        if len(low[0]):
            apart = box_iou(low[0], xyxy).max(axis=1, initial=0.0) <= NMS_IOU
            xyxy, score, roll = (np.concatenate([a, b[apart]])
                                 for a, b in zip((xyxy, score, roll), low))
    # model pixels -> image pixels (the letterbox removed)
    scale, px, py = fit
    xyxy = (xyxy * side - np.array([px, py, px, py], np.float32)) / np.float32(scale)
    return xyxy.astype(np.float32), score.astype(np.float32), roll.astype(np.float32)


def _suppressed(clipped: np.ndarray, reg: np.ndarray, anchors: np.ndarray, side: int,
                which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anchors `which` decoded and suppressed: (xyxy in model units 0-1, score, roll)."""
    hits = np.flatnonzero(which)
    if not len(hits):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
    reg = reg[hits, :8] / side
    centre = reg[:, :2] + anchors[hits]
    half = reg[:, 2:4] / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    # keypoints 0 and 1 are the eyes (the person's right, then left), each regressed
    # around the anchor: the line between them gives the face's roll
    eyes = reg[:, 6:8] - reg[:, 4:6]
    roll = -np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0])).astype(np.float32)
    score = 1 / (1 + np.exp(-clipped[hits]))
    return weighted_nms(xyxy, score.astype(np.float32), NMS_IOU, roll)
