"""Test media built in the tests: face crops from registry photos, synthetic clips with PyAV,
and the check that decides whether a face region was protected."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamguard.assets import asset_path

CROP_CONTEXT = 1.3  # a crop's side is this many face widths (face plus hair and chin)


def load_rgb(name: str) -> np.ndarray:
    img = cv2.imread(str(asset_path(name)), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_crops() -> list[np.ndarray]:
    """Square RGB face crops from the registry photos (found with the full-range model)."""
    from streamguard.detect.mediapipe import BlazeFace

    model = BlazeFace("full_range", 0.5)
    crops = []
    try:
        for name in ("obama.jpg", "biden.jpg", "single_face.jpg", "multi_face.jpg"):
            img = load_rgb(name)
            xyxy, score = model(img)
            for x0, y0, x1, y1 in xyxy[np.argsort(-score)][:2]:
                cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * CROP_CONTEXT
                a0, b0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
                a1, b1 = int(min(cx + side / 2, img.shape[1])), int(min(cy + side / 2, img.shape[0]))
                crops.append(np.ascontiguousarray(img[b0:b1, a0:a1]))
    finally:
        model.close()
    return crops


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured, face-free background (smooth noise plus gradients)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-12, 12, (height, width, 3))
    return np.clip(bg.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def busy_background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A detailed background, as hard as a street or an office: the textured background with
    hundreds of sharp-edged shapes, lines and text of every size over it (expensive to encode,
    and full of edges a detector must not take for faces)."""
    rng = np.random.default_rng(seed)
    bg = background(width, height, seed)
    for _ in range(width * height // 2500):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        kind = rng.integers(0, 4)
        if kind == 0:
            w, h = (int(v) for v in rng.integers(4, 90, 2))
            cv2.rectangle(bg, (x, y), (x + w, y + h), colour, int(rng.choice([-1, 1, 2])))
        elif kind == 1:
            cv2.circle(bg, (x, y), int(rng.integers(3, 40)), colour, int(rng.choice([-1, 2])))
        elif kind == 2:
            dx, dy = (int(v) for v in rng.integers(-120, 120, 2))
            cv2.line(bg, (x, y), (x + dx, y + dy), colour, int(rng.integers(1, 4)))
        else:
            text = "".join(chr(int(c)) for c in rng.integers(48, 91, int(rng.integers(2, 9))))
            cv2.putText(bg, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 1.5)),
                        colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return bg


@dataclass
class Sprite:
    crop: np.ndarray
    face_px: int  # face width in the frame; the pasted crop is CROP_CONTEXT times larger
    start: tuple[float, float]  # crop top-left at frame 0
    velocity: tuple[float, float]  # px per frame
    appears: int = 0  # the first frame it is in view (a person stepping out from a door)

    @property
    def side(self) -> int:
        return int(round(self.face_px * CROP_CONTEXT))

    def box(self, t: int) -> tuple[int, int, int, int]:
        x = int(round(self.start[0] + self.velocity[0] * t))
        y = int(round(self.start[1] + self.velocity[1] * t))
        return x, y, x + self.side, y + self.side


@dataclass
class Clip:
    path: Path
    frames: list[np.ndarray]  # the RGB frames as written (before compression)
    boxes: list[list[tuple[int, int, int, int]]]  # per frame: pasted face boxes (may be off-frame)
    pts: list[int]
    time_base: Fraction
    audio: bool
    meta: dict = field(default_factory=dict)


def paste(frame: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    face = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    h, w = frame.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = face[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def write_clip(path: Path, sprites: list[Sprite], *, width: int = 1280, height: int = 720,
               n_frames: int = 45, fps: int = 30, audio: bool = True, vfr: bool = False,
               codec: str = "libx264", gop: int = 30, metadata: dict | None = None,
               rotation: int = 0, preset: str = "ultrafast", pix_fmt: str = "yuv420p",
               subtitles: bool = False) -> Clip:
    """Write a clip with moving pasted faces (and a sine audio track) using PyAV."""
    bg = background(width, height)
    rng = np.random.default_rng(1)
    if vfr:
        tb = Fraction(1, 1000)
        steps = rng.choice([20, 33, 34, 50, 67], size=n_frames)
        pts = np.concatenate([[0], np.cumsum(steps[:-1])]).astype(int).tolist()
    else:
        tb = Fraction(1, fps * 512) if codec != "mpeg4" else Fraction(1, fps)
        step = int(1 / (fps * tb))
        pts = [i * step for i in range(n_frames)]
    frames, boxes = [], []
    out = av.open(str(path), "w")
    for k, v in (metadata or {}).items():
        out.metadata[k] = v
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
    vs.codec_context.time_base = tb
    vs.time_base = tb
    vs.codec_context.gop_size = gop
    if rotation:
        vs.set_display_rotation(rotation)
    if codec == "libx264":
        vs.codec_context.options = {"crf": "16", "preset": preset}  # veryfast: B-frames
    elif codec == "libx265":
        vs.codec_context.options = {"crf": "18", "preset": "ultrafast", "x265-params": "log-level=none"}
    elif codec in ("mpeg4", "libvpx-vp9"):
        vs.codec_context.bit_rate = 8_000_000
    astream = None
    if audio:
        astream = out.add_stream("aac", rate=48000, layout="stereo")
    sub = out.add_mux_stream("subrip") if subtitles else None  # one cue every 20 frames
    for i in range(n_frames):
        frame = bg.copy()
        fb = []
        for sp in sprites:
            b = sp.box(i)
            if i >= sp.appears:
                paste(frame, sp.crop, b)
            fb.append(b)
        frames.append(frame)
        boxes.append(fb)
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts, vf.time_base = pts[i], tb
        out.mux(vs.encode(vf))
        if sub is not None and i % 20 == 0:
            cue = av.Packet(f"cue {i}".encode())
            cue.stream, cue.time_base = sub, Fraction(1, 1000)
            cue.pts = cue.dts = int(pts[i] * tb * 1000)
            cue.duration = 500
            out.mux(cue)
    out.mux(vs.encode(None))
    if astream is not None:
        mux_tone(out, astream, float((pts[-1] + (pts[1] - pts[0] if n_frames > 1 else 1)) * tb))
    out.close()
    return Clip(path, frames, boxes, pts, tb, audio)


def mux_tone(out, astream, duration: float) -> None:
    """Encode and mux `duration` seconds of a 440 Hz tone into `astream` (AAC, 48 kHz stereo)."""
    n = int(duration * 48000)
    t = np.arange(n) / 48000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([tone, tone])
    for s in range(0, n, 1024):
        chunk = np.ascontiguousarray(stereo[:, s:s + 1024])
        af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        af.sample_rate, af.pts, af.time_base = 48000, s, Fraction(1, 48000)
        out.mux(astream.encode(af))
    out.mux(astream.encode(None))


def decode_rgb(path: Path) -> tuple[list[np.ndarray], list[tuple[int, Fraction]]]:
    frames, times = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append((f.pts, f.time_base))
    return frames, times


def subtitle_packets(path: Path) -> list[tuple[bytes, Fraction]]:
    """Subtitle cues (bytes, start in seconds)."""
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        return [(bytes(p), p.pts * p.time_base) for p in c.demux(c.streams.subtitles[0])
                if p.size]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def detail_similarity(original: np.ndarray, output: np.ndarray) -> float:
    """Correlation of fine detail (Laplacian) between two same-size RGB crops.

    A re-encoded but unprotected face keeps its detail (≈0.6-0.95); a mosaic replaces it with
    flat blocks whose edges do not follow the face (≈0). NaN-safe: flat crops give 0.
    """
    a = cv2.Laplacian(cv2.cvtColor(original, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
    b = cv2.Laplacian(cv2.cvtColor(output, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def visible_core(box: tuple[int, int, int, int], shape: tuple[int, ...], frac: float = 0.6):
    """The central `frac` of a face box, clipped to the frame; None if under 6 px a side."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx0, cy0 = x0 + w * (1 - frac) / 2, y0 + h * (1 - frac) / 2
    cx1, cy1 = cx0 + w * frac, cy0 + h * frac
    H, W = shape[:2]
    a0, b0, a1, b1 = int(max(cx0, 0)), int(max(cy0, 0)), int(min(cx1, W)), int(min(cy1, H))
    if a1 - a0 < 6 or b1 - b0 < 6:
        return None
    return a0, b0, a1, b1


PROTECTED = 0.45  # detail correlation below this: the face's fine detail is gone


def unprotected_faces(clip, out_frames, min_visible=0.5):
    """(frame, face) pairs whose visible face core still shows the original detail."""
    bad = []
    for i, (orig, out) in enumerate(zip(clip.frames, out_frames)):
        for j, box in enumerate(clip.boxes[i]):
            x0, y0, x1, y1 = box
            full = (x1 - x0) * (y1 - y0)
            vis = (min(x1, orig.shape[1]) - max(x0, 0)) * (min(y1, orig.shape[0]) - max(y0, 0))
            if vis <= 0 or vis / full < min_visible:
                continue  # mostly off-frame: not "a face known to be there"
            core = visible_core(box, orig.shape)
            if core is None:
                continue
            a0, b0, a1, b1 = core
            sim = detail_similarity(orig[b0:b1, a0:a1], out[b0:b1, a0:a1])
            if sim > PROTECTED:
                bad.append((i, j, round(sim, 2)))
    return bad


def pts_seconds(times):
    return [Fraction(p) * tb for p, tb in times]


class SlowDetector:
    """The real detector made slower than a camera's frame rate (a busy machine): `delay_s`
    more a call, until `fast_after` calls (None: always); `calls` counts them."""

    def __init__(self, delay_s: float, fast_after: int | None = None):
        from streamguard.config import Config
        from streamguard.detect import create_detector

        self.inner, self.delay_s, self.calls = create_detector(Config().detect), delay_s, 0
        self.fast_after = fast_after

    def detect(self, image, index, around=None):
        import time

        self.calls += 1
        if self.fast_after is None or self.calls <= self.fast_after:
            time.sleep(self.delay_s)
        return self.inner.detect(image, index, around=around)

    def close(self):
        self.inner.close()
