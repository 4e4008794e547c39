"""Ground-truth video: clips of real face photos moving, scaling, cut by the frame's edges or
covered by each other, rendered with, per frame and face, the face box, the part of it that is
visible, its share inside the frame and its speed; and the score of a protected output against
that truth. Used by benchmarks/recall.py and the recall tests.

Protection is made visible with `protect.mode = "solid"` in magenta: a face-frame counts as
protected when magenta covers >= 95 % of the visible part of its face box.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGENTA = (255, 0, 255)
COVERED = 0.95  # share of the visible face box that must be protected
CORE = 0.6  # the face's centre: this middle share of its visible box, each way


# -- faces and their paths ---------------------------------------------------------------------

@dataclass(frozen=True)
class FaceSource:
    """A face photo crop and where the face box sits in it (fractions of the crop side)."""

    crop: np.ndarray
    box: tuple[float, float, float, float]


def face_sources() -> list[FaceSource]:
    """Registry photo crops (tests/media.py) plus the corpus's crops when it is built."""
    from media import CROP_CONTEXT, face_crops

    m = (1 - 1 / CROP_CONTEXT) / 2
    sources = [FaceSource(c, (m, m, 1 - m, 1 - m)) for c in face_crops()]
    corpus = Path(os.environ["STREAMGUARD_CACHE"]) / "faces" / "crops"
    if corpus.is_dir():
        import cv2

        # corpus crops: 128 px, the face box ~64 px wide in the centre (build_corpus.py)
        for path in sorted(corpus.glob("*.png"))[::5][:24]:
            img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            sources.append(FaceSource(img, (0.25, 0.25, 0.75, 0.75)))
    return sources


def _interpolate(keys, t: float) -> tuple[float, ...]:
    if t <= keys[0][0]:
        return tuple(keys[0][1:])
    for (t0, *a), (t1, *b) in zip(keys, keys[1:]):
        if t <= t1:
            u = (t - t0) / max(t1 - t0, 1e-9)
            return tuple(x + u * (y - x) for x, y in zip(a, b))
    return tuple(keys[-1][1:])


@dataclass(frozen=True)
class Track:
    """One face through a clip: centre and face width interpolated between keyframes
    ((t, cx, cy, face_px), t in frames); `front` faces are drawn after (over) the others.
    `roll`: the face turned in the image plane, degrees counter-clockwise as seen, between
    keyframes ((t, degrees)); 90 lies on its side, 180 is upside down (a ceiling camera)."""

    source: int
    keys: tuple[tuple[float, float, float, float], ...]
    front: bool = False
    roll: tuple[tuple[float, float], ...] = ((0, 0.0),)

    def at(self, t: int) -> tuple[float, float, float]:
        return _interpolate(self.keys, t)

    def roll_at(self, t: int) -> float:
        return _interpolate(self.roll, t)[0]


@dataclass(frozen=True)
class Look:
    """What the camera adds to a rendered frame: `gain` and sensor `noise` (sigma, grey
    levels) for low light, a horizontal motion `blur` (px), `infrared` night mode (grey, low
    contrast, lifted blacks), the encoder's `crf`, and a background panning `pan` px a frame."""

    gain: float = 1.0
    noise: float = 0.0
    blur: int = 0
    infrared: bool = False
    crf: int = 16
    pan: float = 0.0
    busy: bool = False  # a detailed background (media.busy_background), not a smooth one

    @property
    def light(self) -> str:
        return "infrared" if self.infrared else "dark" if self.gain < 0.5 else "normal"

    def apply(self, frame: np.ndarray, t: int) -> np.ndarray:
        import cv2

        if self.blur > 1:
            frame = cv2.blur(frame, (self.blur, 1))
        if self.infrared:
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
            frame = np.repeat((60 + 0.45 * grey)[..., None], 3, axis=2)
        if self.gain == 1.0 and not self.noise and not self.infrared:
            return frame
        out = frame.astype(np.float32) * self.gain
        if self.noise:
            rng = np.random.default_rng(t)
            grain = rng.normal(0, self.noise, frame.shape[:2]).astype(np.float32)
            out += grain[..., None]  # sensor noise: mostly in luminance
        return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class Scenario:
    name: str
    width: int
    height: int
    frames: int
    tracks: list[Track]
    look: Look = Look()
    # (first frame, look) from that frame on: a scene that changes (dusk, a camera's motion);
    # the panning and the CRF stay the scenario's `look`'s
    phases: tuple[tuple[int, Look], ...] = ()

    def look_at(self, t: int) -> Look:
        return next((look for start, look in reversed(self.phases) if t >= start), self.look)


def scenarios(width: int, height: int, n: int, n_sources: int) -> list[Scenario]:
    """The clip families of the benchmark, scaled to the frame size (seeded, so every run
    builds the same clips)."""
    rng = np.random.default_rng(width)
    src = iter(int(i) for i in rng.permutation(np.resize(np.arange(n_sources), 64)))
    w, h, e = width, height, n - 1
    out = []
    # moving faces of every size, fully inside
    sizes = [24, 32, 44, 60, 90, 140, 220]
    tracks = []
    for i, px in enumerate(sizes):
        x0, y0 = rng.uniform(0.15 * w, 0.85 * w), (i + 0.5) * h / len(sizes)
        vx = rng.uniform(-3, 3)
        tracks.append(Track(next(src), ((0, x0, y0, px), (e, x0 + vx * e, y0, px))))
    out.append(Scenario("moving", w, h, n, tracks))
    moving = tracks
    # scaling: growing and shrinking faces
    out.append(Scenario("scaling", w, h, n, [
        Track(next(src), ((0, 0.25 * w, 0.5 * h, 40), (e, 0.3 * w, 0.45 * h, 200))),
        Track(next(src), ((0, 0.7 * w, 0.4 * h, 180), (e, 0.65 * w, 0.55 * h, 36))),
        Track(next(src), ((0, 0.5 * w, 0.8 * h, 32), (e / 2, 0.5 * w, 0.75 * h, 90),
                          (e, 0.5 * w, 0.8 * h, 32)))]))
    # fast: faces crossing the frame at 12-30 px per frame
    out.append(Scenario("fast", w, h, n, [
        Track(next(src), ((0, 0.1 * w, 0.3 * h, 60), (e, 0.1 * w + 12 * e, 0.3 * h, 60))),
        Track(next(src), ((0, 0.9 * w, 0.6 * h, 90), (e, 0.9 * w - 20 * e, 0.55 * h, 90))),
        Track(next(src), ((0, 0.5 * w, 0.05 * h, 48), (e, 0.45 * w, 0.05 * h + 8 * e, 48)))]))
    # edges: faces sliding slowly across each edge, 25-95 % inside
    edge = []
    for side, px in (("left", 90), ("right", 120), ("top", 70), ("bottom", 150)):
        lo, hi = -0.3, 0.45  # face centre from outside (25 % in) to mostly inside
        pos = [lo, hi, lo] if side in ("left", "top") else [-lo, -hi, -lo]
        keys = []
        for k, p in enumerate(pos):
            t = k * e / 2
            if side == "left":
                keys.append((t, p * px, 0.35 * h, px))
            elif side == "right":
                keys.append((t, w + p * px, 0.6 * h, px))
            elif side == "top":
                keys.append((t, 0.3 * w, p * px * 1.3, px))
            else:
                keys.append((t, 0.7 * w, h + p * px * 1.3, px))
        edge.append(Track(next(src), tuple(keys)))
    out.append(Scenario("edges", w, h, n, edge))
    # resting half out of the frame (35-50 % inside, never more), and leaving very slowly
    # (70 -> 35 % inside over the clip): the detector finds half faces worst
    rest = [("left", 100, -0.08), ("right", 80, 0.12), ("top", 90, 0.0), ("bottom", 120, 0.1)]
    keys_of = {
        "left": lambda p, px: (p * px, 0.6 * h, px),
        "right": lambda p, px: (w + p * px, 0.3 * h, px),
        "top": lambda p, px: (0.6 * w, p * px * 1.3, px),
        "bottom": lambda p, px: (0.35 * w, h + p * px * 1.3, px),
    }
    out.append(Scenario("edge-resting", w, h, n, [
        Track(next(src), ((0, *keys_of[side](p, px)), (e, *keys_of[side](p, px))))
        for side, px, p in rest]))
    out.append(Scenario("edge-leaving-slowly", w, h, n, [
        Track(next(src), ((0, *keys_of["bottom"](-0.2, 110)), (e, *keys_of["bottom"](0.15, 110)))),
        Track(next(src), ((0, *keys_of["right"](-0.2, 90)), (e, *keys_of["right"](0.15, 90))))]))
    # entering and leaving through the edges at walking speed
    out.append(Scenario("entering", w, h, n, [
        Track(next(src), ((0, -60, 0.4 * h, 80), (e, -60 + 6 * e, 0.4 * h, 80))),
        Track(next(src), ((0, w + 40, 0.7 * h, 56), (e, w + 40 - 5 * e, 0.65 * h, 56))),
        Track(next(src), ((0, 0.6 * w, 0.4 * h, 110), (e, 0.6 * w, -0.2 * h, 110))),
        Track(next(src), ((0, 0.2 * w, h + 60, 64), (e, 0.25 * w, h + 60 - 6 * e, 64)))]))
    # occlusion: a face passing in front of others
    out += camera_scenarios(w, h, n, src)
    out.append(Scenario("occluded", w, h, n, [
        Track(next(src), ((0, 0.45 * w, 0.5 * h, 120), (e, 0.5 * w, 0.5 * h, 120))),
        Track(next(src), ((0, 0.55 * w, 0.35 * h, 70), (e, 0.62 * w, 0.33 * h, 70))),
        Track(next(src), ((0, 0.2 * w, 0.55 * h, 100), (e, 0.75 * w, 0.48 * h, 100)),
              front=True)]))
    # the moving faces at night, upright: an infrared camera's picture (last, so the clips
    # above keep their faces)
    out.append(Scenario("infrared-upright", w, h, n, moving,
                        Look(infrared=True, noise=5.0, crf=23, pan=1.0)))
    out.append(mixed_scenario(w, h, n, n_sources))
    return out


def _turned_tracks(w: int, h: int, e: int, src) -> list[Track]:
    """Seven faces of 44-220 px in view from the first frame to the last, drifting slowly,
    each turned its own way: lying on either side, upside down, at 45 and 135 degrees,
    swinging +-75 degrees, and turning from upright to upside down during the clip."""
    def drift(fx, fy, px, dx=0.02, dy=0.01):
        return ((0, fx * w, fy * h, px), (e, (fx + dx) * w, (fy + dy) * h, px))

    swing = tuple((k * e / 4, 75.0 if k % 2 else -75.0) for k in range(5))
    return [
        Track(next(src), drift(0.12, 0.2, 44), roll=((0, 90.0),)),
        Track(next(src), drift(0.35, 0.18, 60, -0.03), roll=((0, 180.0),)),
        Track(next(src), drift(0.62, 0.22, 90), roll=((0, -90.0),)),
        Track(next(src), drift(0.85, 0.3, 56, -0.02, 0.02), roll=((0, 45.0),)),
        Track(next(src), drift(0.14, 0.68, 140, 0.03, -0.02), roll=swing),
        Track(next(src), drift(0.45, 0.65, 220, 0.02, 0.0), roll=((0, 0.0), (e, 180.0))),
        Track(next(src), drift(0.8, 0.72, 110, -0.03, -0.01), roll=((0, 135.0),)),
    ]


def camera_scenarios(w: int, h: int, n: int, src) -> list[Scenario]:
    """What real cameras add: faces turned in the image plane, low light, infrared night
    mode, motion blur at camera bitrates, faces in the corners from the first frame; every
    background pans."""
    e = n - 1
    out = [
        Scenario("turned", w, h, n, _turned_tracks(w, h, e, src), Look(pan=1.5, crf=23)),
        Scenario("dark", w, h, n, _turned_tracks(w, h, e, src),
                 Look(gain=0.3, noise=5.0, crf=26, pan=1.0)),
        Scenario("infrared", w, h, n, _turned_tracks(w, h, e, src),
                 Look(infrared=True, noise=5.0, crf=23, pan=1.0)),
        Scenario("blurred", w, h, n, _turned_tracks(w, h, e, src),
                 Look(blur=15, crf=28, pan=2.0)),
    ]
    # faces in the corners and on the edges from the first frame to the last (75-100 %
    # inside), upright, slow: the first frames of a file had no look-back before them
    corner = []
    for (fx, fy), px in zip(((0, 0), (1, 0), (0, 1), (1, 1), (1, 0.5), (0.5, 1)),
                            (40, 60, 90, 60, 180, 120)):
        inset = 0.38 * px  # the centre 0.12 face widths inside the frame: ~88 % inside
        cx = inset if fx == 0 else w - inset if fx == 1 else fx * w
        cy = inset * 1.3 if fy == 0 else h - inset * 1.3 if fy == 1 else fy * h
        dx = 0.6 if fx == 0 else -0.6 if fx == 1 else 0.0
        corner.append(Track(next(src), ((0, cx, cy, px), (e, cx + dx * e / 4, cy, px))))
    out.append(Scenario("corners", w, h, n, corner, Look(pan=1.0, crf=23)))
    return out


def mixed_scenario(w: int, h: int, n: int, n_sources: int) -> Scenario:
    """One camera through a changing scene, as a user's test clip was: the turned faces in
    daylight, then dark (gain 0.35 and sensor noise), then under a 15 px motion blur, at
    CRF 26. What the detector and the tracks learned of a face in one light must carry it
    into the next."""
    rng = np.random.default_rng(w + 1)
    src = iter(int(i) for i in rng.permutation(np.resize(np.arange(n_sources), 8)))
    third = n // 3
    return Scenario("mixed", w, h, n, _turned_tracks(w, h, n - 1, src), Look(pan=1.5, crf=26),
                    phases=((third, Look(gain=0.35, noise=5.0)), (2 * third, Look(blur=15))))


def busy_scenario(w: int, h: int, n: int, n_sources: int) -> Scenario:
    """A busy camera: 8 faces of 33-220 px (at 720p; scaled with the frame) walking in view
    from the first frame to the last, two cut by the frame's edge, over a detailed background
    panning 3 px a frame, H.264 at CRF 18 (a high camera bitrate)."""
    rng = np.random.default_rng(7)
    src = [int(i) for i in rng.permutation(np.resize(np.arange(n_sources), 8))]
    s, e = w / 1280, n - 1
    walk = [  # (centre x, centre y, face px) at frame 0, then px a frame (vx, vy)
        (0.18, 0.22, 220, 1.2, 0.3), (0.62, 0.2, 120, -1.5, 0.6), (0.42, 0.62, 90, 1.0, -0.4),
        (0.82, 0.78, 33, -0.8, -0.5), (0.28, 0.8, 48, 0.6, 0.2), (0.72, 0.5, 160, -0.7, 0.1),
        (0.0, 0.45, 100, 0.25, 0.15),  # cut by the left edge, about half inside
        (0.55, 1.0, 90, -0.5, 0.0),  # cut by the bottom edge
    ]
    tracks = [Track(src[i], ((0, fx * w, fy * h, px * s),
                             (e, fx * w + vx * s * e, fy * h + vy * s * e, px * s)))
              for i, (fx, fy, px, vx, vy) in enumerate(walk)]
    return Scenario("busy", w, h, n, tracks, Look(pan=3.0 * s, crf=18, busy=True))


# -- rendering with ground truth --------------------------------------------------------------

def face_box(track: Track, source: FaceSource, t: int) -> tuple[float, float, float, float]:
    cx, cy, px = track.at(t)
    fx0, fy0, fx1, fy1 = source.box
    side = px / (fx1 - fx0)  # the pasted crop's side
    hgt = side * (fy1 - fy0)
    return cx - px / 2, cy - hgt / 2, cx + px / 2, cy + hgt / 2


def render(sc: Scenario, sources: list[FaceSource], t: int, bg: np.ndarray):
    """The frame at t and, per track, (face box, visible mask share, share inside, speed).
    `bg` may be larger than the frame: a panning background is cut from it."""
    import cv2

    h, w = sc.height, sc.width
    shift = int(round(sc.look.pan * t)) % max(bg.shape[1] - w, 1) if sc.look.pan else 0
    frame = bg[:h, shift:shift + w].copy()
    order = sorted(range(len(sc.tracks)), key=lambda i: sc.tracks[i].front)
    owner = np.full((h, w), -1, np.int16)  # which track's face shows at each pixel (-1: none)
    boxes = {}
    polygons = {}
    for i in order:
        tr = sc.tracks[i]
        src = sources[tr.source]
        if tr.roll_at(t) % 360:
            boxes[i], polygons[i] = _paste_turned(frame, owner, tr, src, t, i)
            continue  # (size, (corners, pixels of the turned box inside the frame))
        fx0, fy0, fx1, fy1 = face_box(tr, src, t)
        bx0, by0 = src.box[0], src.box[1]
        side = (fx1 - fx0) / (src.box[2] - src.box[0])
        cx0, cy0 = fx0 - bx0 * side, fy0 - by0 * side
        x0, y0, s = int(round(cx0)), int(round(cy0)), max(int(round(side)), 2)
        crop = cv2.resize(src.crop, (s, s), interpolation=cv2.INTER_AREA if s < len(src.crop)
                          else cv2.INTER_CUBIC)
        a0, b0, a1, b1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
        if a1 > a0 and b1 > b0:
            frame[b0:b1, a0:a1] = crop[b0 - y0:b1 - y0, a0 - x0:a1 - x0]
            # the whole pasted photo hides what is behind it, not only its face (the photo's
            # own background covered a face drawn before it, which then counted as visible)
            owner[b0:b1, a0:a1] = -1
        g0, g1 = max(int(fx0), 0), min(int(math.ceil(fx1)), w)
        h0, h1 = max(int(fy0), 0), min(int(math.ceil(fy1)), h)
        if g1 > g0 and h1 > h0:
            owner[h0:h1, g0:g1] = i
        boxes[i] = (fx0, fy0, fx1, fy1)
    truth = []
    for i, tr in enumerate(sc.tracks):
        if i in polygons:
            truth.append(_turned_truth(tr, t, i, boxes[i], polygons[i], owner, sc.look_at(t)))
            continue
        fx0, fy0, fx1, fy1 = boxes[i]
        area = (fx1 - fx0) * (fy1 - fy0)
        g0, g1 = min(max(int(fx0), 0), w), min(max(int(math.ceil(fx1)), 0), w)
        h0, h1 = min(max(int(fy0), 0), h), min(max(int(math.ceil(fy1)), 0), h)
        g1, h1 = max(g1, g0), max(h1, h0)
        inside = max(g1 - g0, 0) * max(h1 - h0, 0) / area
        visible = (owner[h0:h1, g0:g1] == i) if g1 > g0 and h1 > h0 else np.zeros((0, 0), bool)
        a, b = tr.at(t), tr.at(t + 1)
        speed = math.hypot(b[0] - a[0], b[1] - a[1])
        truth.append({"track": i, "box": (g0, h0, g1, h1), "visible": visible,
                      "size": fx1 - fx0, "inside": min(inside, 1.0),
                      "visible_share": float(visible.sum()) / area, "speed": speed,
                      "roll": 0.0, "light": sc.look_at(t).light,
                      "blur": sc.look_at(t).blur > 1})
    return sc.look_at(t).apply(frame, t), truth


def _paste_turned(frame, owner, tr: Track, src: FaceSource, t: int, i: int):
    """Paste the track's photo turned by its roll about the face's centre; mark the turned
    face box as the track's in `owner`. Returns (face size, (the turned face box's corners,
    its pixels inside the frame))."""
    import cv2

    h, w = frame.shape[:2]
    cx, cy, px = tr.at(t)
    fx0, fy0, fx1, fy1 = src.box
    side = px / (fx1 - fx0)
    # the crop's corners and the face box's, around the face's centre, then turned
    fcx, fcy = (fx0 + fx1) / 2 * side, (fy0 + fy1) / 2 * side
    angle = tr.roll_at(t)
    m = cv2.getRotationMatrix2D((fcx, fcy), angle, 1.0)
    m[:, 2] += (cx - fcx, cy - fcy)
    s = max(int(round(side)), 2)
    crop = cv2.resize(src.crop, (s, s), interpolation=cv2.INTER_AREA if s < len(src.crop)
                      else cv2.INTER_CUBIC)
    turned = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.full((s, s), 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    photo = cover > 0
    frame[photo] = turned[photo]
    owner[photo] = -1  # the photo hides what is behind it
    corners = np.array([[fx0 * side, fy0 * side], [fx1 * side, fy0 * side],
                        [fx1 * side, fy1 * side], [fx0 * side, fy1 * side]])
    polygon = corners @ m[:, :2].T + m[:, 2]
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, np.round(polygon * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    owner[face > 0] = i
    return (fx1 - fx0) * side, (polygon, int(face.sum()))


def _turned_truth(tr: Track, t: int, i: int, size: float, turned: tuple, owner,
                  look: Look) -> dict:
    """A turned face's truth: the frame-clipped bounding box of its turned face box, the
    visible pixels of that turned box inside it, shares of the turned box's area."""
    h, w = owner.shape
    polygon, in_frame = turned
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    g0, h0 = int(np.clip(np.floor(lo[0]), 0, w)), int(np.clip(np.floor(lo[1]), 0, h))
    g1, h1 = int(np.clip(np.ceil(hi[0]), 0, w)), int(np.clip(np.ceil(hi[1]), 0, h))
    g1, h1 = max(g1, g0), max(h1, h0)
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    visible = owner[h0:h1, g0:g1] == i
    inside = in_frame / max(area, 1e-6)  # the turned box's share inside the frame
    a, b = tr.at(t), tr.at(t + 1)
    roll = abs((tr.roll_at(t) + 180) % 360 - 180)  # 0 upright .. 180 upside down
    return {"track": i, "box": (g0, h0, g1, h1), "visible": visible, "size": size,
            "inside": min(inside, 1.0), "visible_share": float(visible.sum()) / area,
            "speed": math.hypot(b[0] - a[0], b[1] - a[1]), "roll": roll,
            "light": look.light, "blur": look.blur > 1}


def write_scenario(sc: Scenario, sources: list[FaceSource], path: Path,
                   audio: bool = False) -> list[list[dict]]:
    """Encode the clip (libx264, the look's CRF (16 unless set), GOP 30, 30 fps; with `audio`
    a tone track, as an RTSP camera serving it needs); returns its ground truth."""
    import av

    from media import background, busy_background, mux_tone

    pan = int(math.ceil(sc.look.pan * sc.frames)) + 1 if sc.look.pan else 0
    paint = busy_background if sc.look.busy else background
    bg = paint(sc.width + pan, sc.height, seed=sc.width + len(sc.name))
    truths = []
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = sc.width, sc.height, "yuv420p"
        vs.codec_context.options = {"crf": str(sc.look.crf), "preset": "veryfast", "g": "30"}
        astream = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        for t in range(sc.frames):
            frame, truth = render(sc, sources, t, bg)
            for f in truth:
                f["t"], f["last"] = t, t == sc.frames - 1
            truths.append(truth)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(vs.encode(None))
        if astream is not None:
            mux_tone(out, astream, sc.frames / 30)
    tmp.rename(path)
    return truths


# -- scoring ----------------------------------------------------------------------------------

def protected_mask(image: np.ndarray) -> np.ndarray:
    """Pixels that came out magenta (codec rounding tolerated)."""
    d = np.abs(image.astype(np.int16) - np.array(MAGENTA, np.int16)).sum(axis=2)
    return d < 90


@dataclass
class Tally:
    records: list[dict] = field(default_factory=list)
    fp_pixels: int = 0
    bg_pixels: int = 0

    def score(self, image: np.ndarray, truth: list[dict], margin: float) -> None:
        mask = protected_mask(image)
        away = np.ones(mask.shape, bool)
        h, w = mask.shape
        for f in truth:
            g0, h0, g1, h1 = f["box"]
            vis = f["visible"]
            if not vis.any():
                continue  # wholly outside the frame or covered
            covered = float((mask[h0:h1, g0:g1] & vis).sum()) / max(int(vis.sum()), 1)
            # the face's centre: the middle CORE of its visible box, where a piece left bare
            # shows eyes, nose or mouth (the live benchmark's `visible_core`, the issue's
            # "bare" face-frame)
            cw, ch = g1 - g0, h1 - h0
            c0, c1 = int(cw * (1 - CORE) / 2), int(math.ceil(cw * (1 + CORE) / 2))
            r0, r1 = int(ch * (1 - CORE) / 2), int(math.ceil(ch * (1 + CORE) / 2))
            core = vis[r0:r1, c0:c1]
            centre = float((mask[h0 + r0:h0 + r1, g0 + c0:g0 + c1] & core).sum()) / max(
                int(core.sum()), 1)
            self.records.append({"size": f["size"], "inside": f["inside"],
                                 "visible": f["visible_share"], "speed": f["speed"],
                                 "roll": f.get("roll", 0.0), "light": f.get("light", "normal"),
                                 "blur": f.get("blur", False), "t": f.get("t", -1),
                                 "last": f.get("last", False), "track": f.get("track", -1),
                                 "covered": covered, "protected": covered >= COVERED,
                                 "centre_covered": centre,
                                 "centre_protected": centre >= COVERED})
            bw, bh = g1 - g0, h1 - h0
            mx, my = int(margin * max(bw, f["size"])), int(margin * max(bh, f["size"]))
            away[max(h0 - my, 0):min(h1 + my, h), max(g0 - mx, 0):min(g1 + mx, w)] = False
        self.fp_pixels += int((mask & away).sum())
        self.bg_pixels += int(away.sum())


def score_file(path: Path, truths: list[list[dict]], margin: float) -> Tally:
    """Score every decoded frame of a protected output against the clip's truth."""
    import av

    tally = Tally()
    with av.open(str(path)) as c:
        for t, vf in enumerate(c.decode(video=0)):
            tally.score(vf.to_ndarray(format="rgb24"), truths[t], margin)
    return tally


def score_live(path: Path, truths: list[list[dict]], cfg) -> tuple[Tally, int, dict]:
    """Score the clip through a live stream (the file played in real time), every frame taken
    from its ZeroMQ output: (tally, frames out, the stream's stats). A queue as long as the
    clip keeps every frame (none dropped), so output index = input index."""
    import json
    import time

    import zmq

    from streamguard.config import StreamConfig
    from streamguard.live import LiveStream

    n = len(truths)
    cfg = cfg.model_copy(update={"live": cfg.live.model_copy(update={"max_queue": n + 1})})
    endpoint = f"ipc:///tmp/streamguard-truth-{os.getpid()}"
    stream = LiveStream(StreamConfig(name="truth", input=str(path), zmq=endpoint), cfg)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(endpoint)
    time.sleep(0.3)  # PUB/SUB: the subscription must reach the stream before its first frame
    tally = Tally()
    got = 0
    stream.start()
    try:
        deadline = time.time() + n / 30 * 3 + 60
        while got < n and time.time() < deadline:
            if not sub.poll(500):
                continue
            header, buf = sub.recv_multipart()
            h = json.loads(header)
            if h["placeholder"]:
                continue
            image = np.frombuffer(buf, np.uint8).reshape(h["shape"])
            tally.score(image, truths[h["index"]], cfg.protect.margin)
            got += 1
    finally:
        stream.stop()
        sub.close(0)
    return tally, got, stream.snapshot()


def solid_overrides() -> list[str]:
    """Config overrides that make protection magenta (regions exactly as in every mode)."""
    return ['protect.mode="solid"', f"protect.solid_color={list(MAGENTA)}"]
