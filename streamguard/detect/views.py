"""Other views of a frame for the face models, and what the detector remembers of them.

BlazeFace was trained on upright faces in good light. Turned a quarter or more in the image
plane (a person lying down, a camera on its side or on the ceiling) a face is found on only
some looks, and in a dark or low-contrast picture (night, infrared) on fewer:

- `Light` / `light_of`: how a frame's levels spread; a dim one (dark or flat: night,
  infrared) is looked at in smaller tiles, where a small low-contrast face shows larger;
- `brightened`: the picture the models see when a colour frame is dim, its levels
  stretched by a lookup table; the frame itself, and what comes out, are untouched;
- `TurnMemory`: which faces were last found turned, and by how many quarter turns, so a
  track's window is cut turned the same way and the face stays found on every look;
- `held_rolled`: a box of a face rolled off the upright (the models' eye line says by how
  much) grown to hold the whole rolled face, not only an upright face's box;
- `NearMisses`: turned views that were unsure of something where no face was found, looked
  at again on the next frames rather than a round of views later.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamguard.detect.geometry import box_iou, scaled_about_centre

# A frame whose levels (1st to 99th percentile of a sparse sample of its green channel)
# span less than this is dark or flat: the models see it stretched. Daylight frames span
# 150-230 levels; the night clips of the recall benchmark (gain 0.3, infrared) 45-80.
FLAT_RANGE = 110
DIM_UNTIL = 120  # a dim scene counts as lit again only once its levels span this much
STRETCH_TO = 200  # levels the stretched span covers (from STRETCH_FLOOR)
STRETCH_FLOOR = 24
MAX_GAIN = 4.0  # beyond it the sensor noise is all the model would see
SAMPLE_STEP = 8  # px between the pixels the levels are read from
GREY_SPREAD = 4.0  # mean max-min channel difference under which a picture has no colour
ROLLED = 20  # degrees off a quarter turn: read as rolled, not as an upright face's jitter
ROLL_SLACK = 10  # degrees a rolled face's roll is read short by, at most


@dataclass(frozen=True)
class Light:
    """A frame's levels: the 1st and 99th percentiles of a sparse sample of its green channel
    (of its luma, for a frame kept in its planes)."""

    lo: float
    hi: float

    @property
    def span(self) -> float:
        return self.hi - self.lo

    @property
    def dim(self) -> bool:
        """Dark or flat (night, infrared, fog): the models need a face larger to find it."""
        return self.span < FLAT_RANGE


def light_of(image) -> Light | None:
    """The frame's `Light`, or None for a picture too small to read it from."""
    planes = getattr(image, "y", None)  # frames.PlanarImage: its luma plane
    if planes is not None:
        sample = planes[::SAMPLE_STEP, ::SAMPLE_STEP]
    else:
        pixels = np.asarray(image)[::SAMPLE_STEP, ::SAMPLE_STEP]
        sample = pixels[..., 1] if pixels.ndim == 3 else pixels
    if sample.size < 16:
        return None
    lo, hi = np.percentile(sample, (1, 99))
    return Light(float(lo), float(hi))


def brightened(image: np.ndarray, light: Light | None = None) -> np.ndarray:
    """`image` itself when its levels span FLAT_RANGE or more, or when it has no colour (an
    infrared night picture); otherwise a copy whose span is stretched to STRETCH_TO levels
    (gain at most MAX_GAIN). The stretch is quantized (black point in steps of 4 levels, gain
    in steps of 1/4) so it stays the same from frame to frame of a steady scene and the
    still-picture checks still hold. `light`: the image's `light_of`, when already read.

    Infrared is left alone because stretching it hides faces from the models: on grey,
    low-contrast, noisy night pictures (the recall benchmark's infrared look) the detector
    found 29 -> 40, 25 -> 33, 20 -> 24 and 10 -> 22 face-frames without the stretch (1080p and
    720p, upright and turned faces), where on dark colour pictures it finds more with it
    (117 -> 124)."""
    light = light or light_of(image)
    if light is None or not light.dim or grey_of(image):  # only dim frames pay the grey check
        return image
    black = 4 * int(light.lo // 4)
    gain = min(MAX_GAIN, np.floor(4 * STRETCH_TO / max(light.hi - black, 1)) / 4)
    if gain <= 1.0:
        return image
    lut = np.clip((np.arange(256, dtype=np.float32) - black) * gain + STRETCH_FLOOR, 0, 255)
    return cv2.LUT(np.asarray(image), lut.astype(np.uint8))


def grey_of(image) -> bool:
    """Whether a frame carries no colour: an infrared night picture, or a monochrome
    camera's (its chroma planes flat at 128, for a frame kept in its planes)."""
    u = getattr(image, "u", None)
    if u is not None:
        chroma = np.abs(u[::SAMPLE_STEP // 2, ::SAMPLE_STEP // 2].astype(np.int16) - 128)
        chroma += np.abs(image.v[::SAMPLE_STEP // 2, ::SAMPLE_STEP // 2].astype(np.int16) - 128)
        return float(chroma.mean()) < GREY_SPREAD
    pixels = np.asarray(image)[::SAMPLE_STEP, ::SAMPLE_STEP]
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return False
    spread = pixels.max(axis=2).astype(np.int16) - pixels.min(axis=2)  # codec rounding: ~1
    return float(spread.mean()) < GREY_SPREAD


@dataclass
class _Turned:
    box: np.ndarray  # (4,) float32, where the face was last found
    quarter: int  # quarter turns clockwise that show it upright
    seen: int  # the detector's frame count when it was last found
    roll: float = 0.0  # degrees off that quarter turn, as read
    score: float = 1.0  # the model's confidence in it then


class TurnMemory:
    """The faces last found turned or rolled: where, by how many quarter turns and degrees
    off them, and when.

    `learn` takes a frame's final boxes with the quarter turn of the view each came from and
    the roll read off it; a face found upright and unrolled is forgotten. `quarter_of` says
    how to turn the window of each expected (tracked) box, `roll_of` how rolled the face
    there was last read. A face not found for `forget_after` frames is forgotten.
    """

    MATCH_IOU = 0.2  # an expected box moved since: a loose match still names its face
    UPRIGHT_IOU = 0.5  # an upright, unrolled find this close to a face: the face is upright
    SURER = 0.1  # how much less sure than the remembered find another may be and replace it
    # a find this sure is the face upright in its view: wrong-side finds score 0.45-0.76 on
    # the registry photos, right-side ones 0.84-0.94 (0.7-0.8 in infrared)
    SURE = 0.7

    def __init__(self, forget_after: int = 30):
        self.forget_after = forget_after
        self._faces: list[_Turned] = []

    def __len__(self) -> int:
        return len(self._faces)

    def learn(self, xyxy: np.ndarray, quarter: np.ndarray, frame: int,
              roll: np.ndarray | None = None, score: np.ndarray | None = None) -> None:
        """A frame's final boxes: the quarter turn of the view each came from, the roll read
        off it (degrees) and the model's confidence.

        BlazeFace also finds a face upside down, less surely and boxed off its place: a
        remembered face takes another quarter turn (or upright) only from a find at least
        nearly as sure as the one it was remembered by (SURER), so the turn that shows it
        upright, found surest, holds."""
        n = len(xyxy)
        quarter = np.asarray(quarter, np.int64) % 4
        rolls = np.zeros(n) if roll is None else np.abs(np.asarray(roll, np.float64))
        scores = np.ones(n) if score is None else np.asarray(score, np.float64)
        marked = (quarter != 0) | (rolls >= ROLLED)
        kept = [f for f in self._faces if frame - f.seen <= self.forget_after]
        taken = np.zeros(n, bool)  # finds that name a remembered face but lose to it
        if n and kept:
            iou = box_iou(np.array([f.box for f in kept], np.float32), xyxy)
            # an upright model's box of a turned face lies off the face (IoU ~0.3 with it):
            # only a find close to it says that the face is upright now
            near = np.where(marked[None, :], iou > self.MATCH_IOU, iou > self.UPRIGHT_IOU)
            still = []
            for f, row in zip(kept, near):
                rivals = np.flatnonzero(row)
                same = rivals[quarter[rivals] == f.quarter]
                better = rivals[scores[rivals] >= f.score - self.SURER]
                if len(same) or len(better):
                    continue  # found again (replaced below), or bettered
                taken[rivals] = True
                still.append(f)
            kept = still
        for k in np.flatnonzero(marked & ~taken):
            kept.append(_Turned(np.asarray(xyxy[k], np.float32).copy(), int(quarter[k]), frame,
                                float(rolls[k]), float(scores[k])))
        self._faces = kept

    def _match(self, boxes: np.ndarray) -> list[_Turned | None]:
        if not len(boxes) or not self._faces:
            return [None] * len(boxes)
        iou = box_iou(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.array([f.box for f in self._faces], np.float32))
        best = iou.argmax(axis=1)
        return [self._faces[j] if iou[i, j] > self.MATCH_IOU else None
                for i, j in enumerate(best)]

    def quarter_of(self, expected: np.ndarray, frame: int = 0) -> np.ndarray:
        """(N,) int: for each expected box, the quarter turns to cut its window at: those of
        the face found there, 0 for faces not found turned, -1 for a window not turned (a
        face upright but rolled). A turn found unsurely (under SURE) may be the face seen
        from the wrong side: every other frame its window is not turned, so the upright
        view, surer where the face is upright, can set it right."""
        out = []
        for f in self._match(expected):
            if f is None:
                out.append(0)
            elif not f.quarter or (f.score < self.SURE and frame % 2):
                out.append(-1)
            else:
                out.append(f.quarter)
        return np.array(out, np.int64)

    def roll_of(self, boxes: np.ndarray) -> np.ndarray:
        """(N,) float32: how far off its quarter turn the face at each box was last read."""
        return np.array([0.0 if f is None else f.roll for f in self._match(boxes)], np.float32)



def with_roll(found: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box model's result as (xyxy, score, roll): roll 0 where the model reads none."""
    if len(found) == 3:
        return found
    xyxy, score = found
    return xyxy, score, np.zeros(len(score), np.float32)


def held_rolled(xyxy: np.ndarray, roll: np.ndarray, keep: np.ndarray, iou: float,
                at_least: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The boxes `keep` (those suppression kept), each grown about its centre to hold a face
    rolled as far off its nearest quarter turn as any box it suppressed (IoU over `iou`) was
    read to be, or `at_least` (per kept box: as it was last read there): to the bounding box
    of the face box turned by that roll (|cos| + |sin|: up to 1.41x at 45 degrees), so a
    rolled face is covered corner to corner. Returns (the grown boxes, the roll each face was
    read at: degrees off its quarter turn)."""
    kept = xyxy[keep]
    if not len(kept):
        return kept, np.zeros(0, np.float32)
    off = np.abs((np.asarray(roll, np.float32) + 45) % 90 - 45)
    most = np.where(box_iou(kept, xyxy) > iou, off[None, :], 0).max(axis=1)
    most = np.maximum(most, off[keep])
    read = most if at_least is None else np.maximum(most, at_least)
    # under ROLLED the reading is an upright face's jitter, and the protection margin holds
    # such a tilt; the eye line reads a rolled face's roll up to ~10 degrees short (45 read
    # as 30-46 on the registry photos): a face read as clearly rolled is held as if 10 more
    held = np.where(read >= ROLLED, np.minimum(read + ROLL_SLACK, 45), 0)
    grow = np.cos(np.radians(held)) + np.sin(np.radians(held))
    return scaled_about_centre(kept, grow), most.astype(np.float32)


def one_turn_per_face(xyxy: np.ndarray, score: np.ndarray, quarter: np.ndarray) -> np.ndarray:
    """Indices to keep of boxes from views turned differently: BlazeFace also finds a face
    from the wrong side (upside down, or a quarter off) less surely, and boxes it off its
    place, too far for suppression to merge (IoU ~0.3). Of two boxes from different quarter
    turns where one's centre lies inside the other, the less sure goes; two faces side by
    side never hold each other's centre."""
    n = len(xyxy)
    if n < 2 or len(set(np.asarray(quarter).tolist())) < 2:
        return np.arange(n)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    inside = ((centre[None, :, 0] > xyxy[:, None, 0]) & (centre[None, :, 0] < xyxy[:, None, 2])
              & (centre[None, :, 1] > xyxy[:, None, 1]) & (centre[None, :, 1] < xyxy[:, None, 3]))
    inside = inside | inside.T  # (i, j): one's centre inside the other
    other = quarter[:, None] != quarter[None, :]
    surer = score[None, :] > score[:, None]  # (i, j): j is surer than i
    return np.flatnonzero(~(inside & other & surer).any(axis=1))


class NearMisses:
    """Turned views that nearly found a face, looked at again on the next looks.

    A turned view comes round once in `turned_every` frames. A face the model scores about
    its threshold there (small, blurred, dark) is then found on one round in two or three,
    later than the look-back reaches: a blurred 44 px face lying on its side scored
    0.40-0.55 in its view frame after frame and was first found on frame 42, bare on 0-21.
    A view whose model was unsure of something (from `edge_min_score` up to `min_score`)
    where no face was found is looked at again on each of the next LOOKS looks, AT_ONCE a
    look at most, so such a face is found within a few frames. What it finds counts as any
    view's finds do: no threshold changes. Only a view's own turn starts its looks again (an
    unsure find in a look again does not), so a texture the model is always unsure of costs
    LOOKS model calls a round, not one every frame.
    """

    LOOKS = 4
    AT_ONCE = 1
    MIN_SIDE = 32  # px: smaller unsure finds are textures more often than faces

    def __init__(self) -> None:
        self._left: dict[tuple, int] = {}  # view -> looks it is still looked at again
        self._again: list[tuple] = []  # the views looked at again this look

    def again(self, taken: list) -> list:
        """The views to look at again this look, besides those `taken` anyway (the most
        recent near misses first); each such view has one look fewer left."""
        self._again = [v for v in reversed(self._left) if v not in taken][:self.AT_ONCE]
        for view in self._again:
            self._left[view] -= 1
            if not self._left[view]:
                del self._left[view]
        return self._again

    def learn(self, near: list[tuple[tuple, np.ndarray]], found: np.ndarray) -> None:
        """`near`: (view, boxes the model was unsure of in it, on the frame) of this look;
        `found`: the look's final boxes and the tracked faces. A view on its own turn whose
        unsure box (MIN_SIDE or more) lies on no such face (its centre in none) is looked at
        again."""
        for view, boxes in near:
            boxes = boxes[boxes[:, 2] - boxes[:, 0] >= self.MIN_SIDE]
            if view in self._again or not len(boxes):
                continue
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            on_face = ((centre[:, None, :] > found[None, :, :2])
                       & (centre[:, None, :] < found[None, :, 2:])).all(axis=2).any(axis=1)
            if not on_face.all():
                self._left.pop(view, None)  # to the end: the most recent
                self._left[view] = self.LOOKS
