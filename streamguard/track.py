"""Face boxes across frames, so a face never slips through when the detector blinks.

Each track predicts its box with a constant-velocity alpha-beta filter (no lag on steady motion,
damped while the face is lost), matches detections greedily by IoU (with a centre-distance
fallback for small, fast faces), smooths jitter and
survives `max_missed` frames without a detection, its box growing with the uncertainty, or
longer while the picture there still looks like its face (`appearance`: the detector blinks
longest on faces turned, blurred or in the dark).
For privacy the box to protect is never smaller than what was detected: on a matched frame it is
the union of the smoothed box and the raw detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamguard.appearance import follow, template
from streamguard.config import TrackConfig
from streamguard.detect.geometry import box_iou
from streamguard.frames import Faces

_VELOCITY_DAMPING = 0.8  # per missed frame: extrapolation slows rather than flies off
_GATE = 1.0  # centre distance, in face sizes, within which a zero-IoU detection may match
_MAX_GROWTH = 0.25  # per side: a box kept through misses grows to at most 1.5x its size
_EDGE_PATIENCE = 3  # unconfirmed tracks cut by the frame's edge: this many times max_missed
_CONFIRMED = 3  # detections after which an edge track is held for track.edge_hold frames

# a track found only once is held by its look for this share of track.appearance_hold: the
# detector's one-off finds on a busy background (scores 0.51-0.6) look alike frame after
# frame; held as long as faces, they doubled the protected background area at 1080p
_ONCE_SHARE = 3
_LOOK_SLACK = 1  # frames' worth of box growth for a face seen by its look (miss_growth each)
_SPEED_SLACK = 0.5  # coasting: box room per frame not looked at, in per-frame speeds

def _centre_motion(velocity: np.ndarray) -> np.ndarray:
    """A prediction moves the box's centre; its size changes only with detections (a size
    "velocity" from two noisy boxes would grow a lost track's box without bound)."""
    centre = (velocity[:2] + velocity[2:]) / 2
    return np.concatenate([centre, centre])


def _cut_by_edge(box: np.ndarray, width: int, height: int) -> bool:
    return bool(box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height)


@dataclass
class _Track:
    id: int
    box: np.ndarray  # smoothed xyxy, float64
    velocity: np.ndarray  # per-frame xyxy displacement
    missed: int = 0
    hits: int = 1
    coasted: int = 0  # frames since the last update (not looked at: `detect.every`)
    last_score: float = 1.0
    face: np.ndarray | None = None  # its face's look at the last detection (`appearance`)
    unseen: int = 0  # missed frames since the face was last seen, detected or by its look


def box_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest xyxy box holding both."""
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])


def _in_frame(boxes: list, scores: list, ids: list, width: int, height: int,
              ) -> tuple[Faces, set[int]]:
    """The boxes that still reach into the frame (clipped to within a frame of it), and the
    ids of those that left it."""
    if not boxes:
        return Faces.empty(), set()
    out = np.array(boxes, np.float64)
    out[:, [0, 2]] = out[:, [0, 2]].clip(-width, 2 * width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(-height, 2 * height)
    visible = (out[:, 2] > 0) & (out[:, 0] < width) & (out[:, 3] > 0) & (out[:, 1] < height)
    gone = {ids[i] for i in np.flatnonzero(~visible)}
    return (Faces(out[visible].astype(np.float32), np.array(scores, np.float32)[visible],
                  np.array(ids, np.int64)[visible]), gone)


def _unsure(tr: _Track) -> int:
    """Frames' worth of growth for a track's box: the frames its face has not been seen,
    by the detector or by its look; a face seen only by its look (located to a few pixels of
    a 32 px picture) at least _LOOK_SLACK."""
    return max(tr.unseen, min(tr.missed, _LOOK_SLACK))


def _found_there(box: np.ndarray, dets: np.ndarray) -> bool:
    """Whether a detection of this frame lies on the box (overlaps it, or holds its centre):
    a track the detector missed there is a duplicate of a face it found, not a face it
    missed, and is not held by its look."""
    if not len(dets):
        return False
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    holds = (dets[:, 0] < cx) & (cx < dets[:, 2]) & (dets[:, 1] < cy) & (cy < dets[:, 3])
    return bool(holds.any() or box_iou(box[None].astype(np.float32),
                                       dets.astype(np.float32)).max() > 0.2)


def _grow(box: np.ndarray, frac: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + np.array([-frac * w, -frac * h, frac * w, frac * h])


class Tracker:
    """Stateful IoU tracker. `update(detections, frame_shape)` returns the Faces to protect."""

    def __init__(self, cfg: TrackConfig):
        self.cfg = cfg
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.tracks_started = 0
        self.detected_ids: frozenset[int] = frozenset()  # ids matched or started by the last update

    def _associate(self, predicted: np.ndarray, dets: np.ndarray) -> list[tuple[int, int]]:
        iou = box_iou(predicted, dets)
        # centre-distance fallback: a small face that moved more than its own size has IoU 0
        if len(predicted) and len(dets):
            pc = (predicted[:, :2] + predicted[:, 2:]) / 2
            dc = (dets[:, :2] + dets[:, 2:]) / 2
            size = np.maximum(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])
            dist = np.linalg.norm(pc[:, None] - dc[None], axis=2) / np.maximum(size[:, None], 1)
            near = (dist < _GATE) & (iou < self.cfg.iou_match)
            iou = np.where(near, self.cfg.iou_match + 1e-3 * (1 - dist / _GATE), iou)
        pairs = []
        while iou.size and iou.max() >= max(self.cfg.iou_match, 1e-6):
            t, d = np.unravel_index(np.argmax(iou), iou.shape)
            pairs.append((int(t), int(d)))
            iou[t, :] = -1
            iou[:, d] = -1
        return pairs

    def update(self, detections: Faces, frame_shape: tuple[int, ...], hold: bool = False,
               picture=None) -> Faces:
        """`hold`: this frame's misses prove nothing (a damaged picture): no track ends on it.
        A track over its limit ends on the first frame without `hold` that misses it too.
        `picture`: the frame (RGB or planar): a track the detector misses is held while its
        face still looks as it did (`track.appearance_hold`)."""
        height, width = frame_shape[:2]
        cfg = self.cfg
        frames = {}  # per track: frames since its last update (1, more after coasted frames)
        for tr in self._tracks:
            tr.box = tr.box + _centre_motion(tr.velocity)
            frames[tr.id], tr.coasted = tr.coasted + 1, 0
        predicted = np.array([tr.box for tr in self._tracks], np.float64).reshape(-1, 4)
        dets = detections.xyxy.astype(np.float64)
        pairs = self._associate(predicted, dets)
        matched_t = {t for t, _ in pairs}
        matched_d = {d for _, d in pairs}
        out_boxes, out_scores, out_ids = [], [], []
        detected: list[int] = []

        alpha = 1.0 - cfg.smoothing
        beta = alpha * alpha / (2.0 - alpha)  # the critically damped alpha-beta pairing
        for t, d in pairs:
            tr = self._tracks[t]
            det = dets[d]
            residual = det - tr.box  # tr.box is the prediction for this frame
            smoothed = tr.box + alpha * residual
            # the residual built up over the frames since the last update: per frame
            tr.velocity = tr.velocity + beta * residual / frames[tr.id]
            tr.box = smoothed
            tr.missed = tr.unseen = 0
            tr.hits += 1
            tr.last_score = float(detections.score[d])
            tr.face = self._look(picture, det)
            out_boxes.append(box_union(smoothed, det))
            out_scores.append(tr.last_score)
            out_ids.append(tr.id)
            detected.append(tr.id)

        survivors = []
        for i, tr in enumerate(self._tracks):
            if i in matched_t:
                survivors.append(tr)
                continue
            tr.missed += 1
            tr.unseen += 1
            tr.velocity = tr.velocity * _VELOCITY_DAMPING
            limit = cfg.max_missed
            if _cut_by_edge(tr.box, width, height):
                # the detector finds faces cut by the edge worst: a face leaving (or resting
                # half out of the frame) is kept until its box has left the frame, up to
                # edge_hold frames once it was confirmed, a few max_missed otherwise
                limit = max(limit * _EDGE_PATIENCE,
                            cfg.edge_hold if tr.hits >= _CONFIRMED else 0)
            seen = None if _found_there(tr.box, dets) else self._seen_by_look(tr, picture)
            # ends over its limit, unless its look was seen within max_missed frames
            if tr.missed > limit and tr.unseen > cfg.max_missed and not hold:
                continue
            survivors.append(tr)
            # the box grows with the uncertainty, to at most half its size again (a large
            # face kept through edge misses would otherwise cover the frame)
            box = tr.box if seen is None else box_union(tr.box, seen)
            out_boxes.append(_grow(box, min(cfg.miss_growth * _unsure(tr), _MAX_GROWTH)))
            out_scores.append(tr.last_score)
            out_ids.append(tr.id)

        for d in range(len(dets)):
            if d in matched_d:
                continue
            tr = _Track(self._next_id, dets[d].copy(), np.zeros(4),
                        last_score=float(detections.score[d]),
                        face=self._look(picture, dets[d]))
            self._next_id += 1
            self.tracks_started += 1
            survivors.append(tr)
            detected.append(tr.id)
            out_boxes.append(dets[d])
            out_scores.append(tr.last_score)
            out_ids.append(tr.id)
        self._tracks = survivors
        self.detected_ids = frozenset(detected)

        faces, gone = _in_frame(out_boxes, out_scores, out_ids, width, height)
        # a track whose extrapolated box left the frame is over
        self._tracks = [tr for tr in self._tracks if tr.id not in gone or tr.missed == 0]
        return faces

    def _look(self, picture, box: np.ndarray) -> np.ndarray | None:
        if picture is None or not self.cfg.appearance_hold:
            return None
        return template(picture, box)

    def _seen_by_look(self, tr: _Track, picture) -> np.ndarray | None:
        """Where a track the detector missed is seen by its face's look near where it was
        expected, or None: up to `appearance_hold` frames since its last detection (a third
        of that when it was found only once). Seen, the track moves towards it as towards a
        detection (smoothed), and `unseen` starts again."""
        quota = self.cfg.appearance_hold
        if tr.hits < 2:  # found once: it may be a pattern the detector took for a face once
            quota //= _ONCE_SHARE
        if picture is None or tr.face is None or tr.missed > quota:
            return None
        box, alike = follow(picture, tr.box, tr.face)
        if alike < self.cfg.appearance_match:
            return None
        tr.box = tr.box + (1.0 - self.cfg.smoothing) * (box - tr.box)
        tr.unseen = 0
        return box

    def coast(self, frame_shape: tuple[int, ...]) -> Faces:
        """A frame the detector did not look at (`detect.every`, the frame budget): every
        track moves on along its motion and is protected with its box grown by its speed, and
        as on its last frame for the frames its face was missed. A frame not looked at is not
        a miss: its only doubt is where the face moved, which the speed's room holds, and the
        look-back puts the box between two looks onto it. Grown as for a missed frame too,
        the boxes of the large rolled faces of the dark clip at 720p covered 21 % of the
        background live, at every 3rd frame, against 14.5 % without (offline 11 %). Nothing
        is counted as missed: tracks end only on frames looked at.
        """
        height, width = frame_shape[:2]
        growth = self.cfg.miss_growth
        boxes, scores, ids = [], [], []
        for tr in self._tracks:
            motion = _centre_motion(tr.velocity)
            tr.box = tr.box + motion
            tr.coasted += 1
            box = _grow(tr.box, min(growth * _unsure(tr), _MAX_GROWTH))
            # a fast face strays furthest from its predicted path: room for half its speed
            # per frame not looked at, on each side
            slack = np.abs(motion[:2]) * (_SPEED_SLACK * tr.coasted)
            boxes.append(box + np.concatenate([-slack, slack]))
            scores.append(tr.last_score)
            ids.append(tr.id)
        self.detected_ids = frozenset()
        return _in_frame(boxes, scores, ids, width, height)[0]

    def predicted(self) -> np.ndarray:
        """(N, 4) where each live track expects its face on the next frame (state unchanged)."""
        boxes = [tr.box + _centre_motion(tr.velocity) for tr in self._tracks]
        return np.array(boxes, np.float32).reshape(-1, 4)

    @property
    def active(self) -> int:
        return len(self._tracks)
