"""Per-frame data: `Faces` (a frozen struct of arrays) and the `Frame` envelope.

Time travels with the pixels: a Frame carries its index, pts and time_base from decode to
encode, so output timing is the input's, frame for frame (VFR-safe).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from streamguard.io.colour import Colour


@dataclass(frozen=True)
class Faces:
    """Face boxes of one frame.

    xyxy:     (N, 4) float32, pixel corners (x0, y0, x1, y1), x1 > x0 and y1 > y0.
    score:    (N,) float32 detector confidence (1.0 for boxes kept alive by the tracker).
    track_id: (N,) int64, -1 when untracked.
    """

    xyxy: np.ndarray
    score: np.ndarray
    track_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        if not (len(xyxy) == len(score) == len(track_id)):
            raise ValueError(
                f"Faces arrays disagree: xyxy {xyxy.shape}, score {score.shape}, "
                f"track_id {track_id.shape}"
            )
        if not np.all(np.isfinite(xyxy)):
            raise ValueError("Faces.xyxy holds NaN or inf")
        for name, arr in (("xyxy", xyxy), ("score", score), ("track_id", track_id)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_boxes(cls, xyxy: Any, score: Any = None) -> Faces:
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        score = np.ones(n, np.float32) if score is None else score
        return cls(xyxy, score, np.full(n, -1, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Faces:
        return Faces(self.xyxy[index], self.score[index], self.track_id[index])

    @staticmethod
    def concat(items: list[Faces]) -> Faces:
        if not items:
            return Faces.empty()
        return Faces(
            np.concatenate([f.xyxy for f in items]),
            np.concatenate([f.score for f in items]),
            np.concatenate([f.track_id for f in items]),
        )


@dataclass
class Timing:
    """Wall-clock marks of a live frame (`time.monotonic()` seconds) for its latency figures.

    The one mutable part of a Frame: each stage stamps its mark as the frame passes, so timing
    never costs a copy of the envelope. Files carry none."""

    received: float  # decoded from the camera
    analyzed: float | None = None  # detected and tracked
    released: float | None = None  # let go by the look-back

    @property
    def held_s(self) -> float:
        """How long the look-back held the frame."""
        if self.analyzed is None or self.released is None:
            return 0.0
        return self.released - self.analyzed


@dataclass(frozen=True)
class Frame:
    """One decoded video frame travelling through the pipeline, files and live alike.

    image: (H, W, 3) uint8 RGB (or a PlanarImage). Never mutated after creation: stages return
        new Frames (`replace`).
    pts/time_base: presentation time, always set: a file's as decoded (gaps filled by
        `PtsFallback`), a live frame's the camera's own time plus its connection's offset on
        the live 90 kHz clock (strictly increasing from the source on).
    faces: boxes to protect (None until detection ran).
    failed_closed: detection failed or timed out, or the frame is damaged: protected whole (or
        dropped, by policy).
    damaged: the decoder patched lost data into this frame or one it is predicted from.
    detected_ids: track ids the detector found on this frame (the others were extrapolated);
        None before tracking.
    detect_error: the detector raised on this frame (not a timeout).
    rotation: the display rotation the container declares (degrees; the first frame's counts).
    colour: the frame's colour tags (`streamguard.io.colour.Colour`), where the output must
        follow them frame by frame (live inputs); None: the stream's.
    timing: live frames' latency marks; None for files.
    """

    index: int
    pts: int
    time_base: Fraction
    image: Any
    faces: Faces | None = None
    failed_closed: bool = False
    damaged: bool = False
    detected_ids: frozenset[int] | None = None
    detect_error: bool = False
    rotation: int = 0
    colour: Colour | None = None
    timing: Timing | None = None

    def __post_init__(self) -> None:
        if self.pts is None or self.time_base is None:
            raise ValueError(f"frame {self.index}: a Frame needs its pts and time_base")

    @classmethod
    def numbered(cls, index: int, image: Any, rate: int = 30, **fields: Any) -> Frame:
        """A frame timed by its number alone (pictures handed in one by one: the library API,
        tests): pts = index on a 1/rate clock."""
        return cls(index, index, Fraction(1, rate), image, **fields)

    def replace(self, **changes: Any) -> Frame:
        return dataclasses.replace(self, **changes)

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


@dataclass(frozen=True)
class Passthrough:
    """A demuxed packet of a non-video stream (audio, subtitles, data), copied unchanged.

    It travels in demux order with the frames so the muxer interleaves it where it was.
    """

    packet: Any
    stream_index: int


class PlanarImage:
    """A decoded 8-bit 4:2:0 frame (yuv420p, BT.601 limited range: what the RGB path's
    conversions assume too) kept in its Y, U and V planes, read and written like an
    (H, W, 3) uint8 RGB array through the region it touches.

    - `image[y0:y1, x0:x1]` (slices, or index arrays as the track lock samples) converts only
      that region to RGB; `image[y0:y1, x0:x1] = rgb` (or a colour) converts the region back
      and writes it: luma exactly inside the region, chroma for every 2 x 2 sample the region
      touches (a sample straddling its edge mixes the new and the old pixels, as the encoder's
      own RGB -> 4:2:0 conversion would). Everything else stays bit-identical to the decode.
    - `thumbnail(max_side)` is a small RGB picture of the whole frame for the full-frame
      detection pass; `np.asarray(image)` converts the whole frame (fail-closed frames only).
    - `to_video_frame()` hands the encoder these planes: no whole-frame conversion on the way
      out either.
    Frames that are not 8-bit 4:2:0 with even sides, or are full range (yuvj), stay RGB:
    `from_video_frame` returns None for them.
    """

    __slots__ = ("y", "u", "v")
    FORMATS = ("yuv420p",)
    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray):
        self.y, self.u, self.v = y, u, v

    @classmethod
    def from_video_frame(cls, vf: Any) -> PlanarImage | None:
        w, h = vf.width, vf.height
        if vf.format.name not in cls.FORMATS or w % 2 or h % 2 or w < 2 or h < 2:
            return None
        if getattr(vf, "color_range", 0) == 2:  # yuv420p tagged full range: as yuvj
            return None

        def plane(i: int, pw: int, ph: int) -> np.ndarray:
            p = vf.planes[i]
            return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw].copy()

        return cls(plane(0, w, h), plane(1, w // 2, h // 2), plane(2, w // 2, h // 2))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.y.shape, 3)

    def copy(self) -> PlanarImage:
        return PlanarImage(self.y.copy(), self.u.copy(), self.v.copy())

    # -- regions --------------------------------------------------------------------------

    def _rgb(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """RGB of [y0:y1, x0:x1] (bounds inside the frame)."""
        ax0, ax1 = x0 - x0 % 2, x1 + x1 % 2  # chroma-aligned, with rows in fours for I420
        ay0, ay1 = y0 - y0 % 4, min(y1 + (-y1) % 4, self.y.shape[0])
        if (ay1 - ay0) % 4:
            ay0 = max(ay1 - (-(-(ay1 - ay0) // 4) * 4), 0)
        h, w = ay1 - ay0, ax1 - ax0
        if h % 4:  # a frame less than four rows high in all: no I420 layout fits
            rgb = self._rgb_444(ax0, ay0, ax1, ay1)
        else:
            buf = np.empty((h * 3 // 2, w), np.uint8)
            buf[:h] = self.y[ay0:ay1, ax0:ax1]
            buf[h:h + h // 4] = self.u[ay0 // 2:ay1 // 2, ax0 // 2:ax1 // 2].reshape(h // 4, w)
            buf[h + h // 4:] = self.v[ay0 // 2:ay1 // 2, ax0 // 2:ax1 // 2].reshape(h // 4, w)
            rgb = cv2.cvtColor(buf, cv2.COLOR_YUV2RGB_I420)
        return rgb[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]

    def _rgb_444(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        up = lambda c: np.repeat(np.repeat(c[y0 // 2:y1 // 2, x0 // 2:x1 // 2], 2, 0), 2, 1)  # noqa
        yuv = np.stack([self.y[y0:y1, x0:x1], up(self.u), up(self.v)], -1)
        y = (yuv[..., 0].astype(np.float32) - 16) * (255 / 219)
        u, v = (yuv[..., 1].astype(np.float32) - 128), (yuv[..., 2].astype(np.float32) - 128)
        s = 255 / 224
        r, b = y + s * 1.402 * v, y + s * 1.772 * u
        g = y - s * (0.344136 * u + 0.714136 * v)
        return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(np.uint8)

    def _bounds(self, key: Any) -> tuple[tuple[int, int, int, int], Any]:
        """(x0, y0, x1, y1) the key reads, and the key relative to that box."""
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("a PlanarImage is indexed by [rows, columns]")
        h, w = self.y.shape
        out, rel = [], []
        for k, n in zip(key, (h, w)):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step != 1:
                    raise TypeError("a PlanarImage takes slices with step 1")
                out.append((start, max(stop, start)))
                rel.append(slice(0, max(stop, start) - start))
            else:
                idx = np.asarray(k)
                lo, hi = int(idx.min()), int(idx.max()) + 1
                out.append((lo, hi))
                rel.append(idx - lo)
        (y0, y1), (x0, x1) = out
        return (x0, y0, x1, y1), tuple(rel)

    def __getitem__(self, key: Any) -> np.ndarray:
        (x0, y0, x1, y1), rel = self._bounds(key)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        region = self._rgb(x0, y0, x1, y1)
        if all(isinstance(r, slice) for r in rel):
            return region
        return region[rel]

    def __setitem__(self, key: Any, value: Any) -> None:
        (x0, y0, x1, y1), rel = self._bounds(key)
        if not all(isinstance(r, slice) for r in rel):
            raise TypeError("a PlanarImage is written through slices")
        if x1 <= x0 or y1 <= y0:
            return
        # the chroma samples the region touches, and the pixels they cover
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, -(-x1 // 2), -(-y1 // 2)
        rgb = np.array(self._rgb(2 * cx0, 2 * cy0, 2 * cx1, 2 * cy1))  # old pixels around
        rgb[y0 - 2 * cy0:y1 - 2 * cy0, x0 - 2 * cx0:x1 - 2 * cx0] = value
        ch, cw = cy1 - cy0, cx1 - cx0
        if ch % 2:  # I420 wants rows in fours: repeat the last row pair (its chroma is kept)
            rgb = np.concatenate([rgb, rgb[-2:]])
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        hh = rgb.shape[0]
        self.y[y0:y1, x0:x1] = yuv[y0 - 2 * cy0:y1 - 2 * cy0, x0 - 2 * cx0:x1 - 2 * cx0]
        u = yuv[hh:hh + hh // 4].reshape(hh // 2, cw)
        v = yuv[hh + hh // 4:].reshape(hh // 2, cw)
        self.u[cy0:cy1, cx0:cx1] = u[:ch]
        self.v[cy0:cy1, cx0:cx1] = v[:ch]

    # -- whole frame ----------------------------------------------------------------------

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        h, w = self.y.shape
        rgb = self._rgb(0, 0, w, h)
        return rgb if dtype is None else rgb.astype(dtype)

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """(RGB picture whose longer side is at most max_side, scale back to frame pixels)."""
        h, w = self.y.shape
        f = max(w, h) / max_side
        if f <= 1:
            return np.asarray(self), 1.0
        tw, th = max(2, round(w / f / 2) * 2), max(4, round(h / f / 4) * 4)
        area = cv2.INTER_AREA
        buf = np.empty((th * 3 // 2, tw), np.uint8)
        buf[:th] = cv2.resize(self.y, (tw, th), interpolation=area)
        buf[th:th + th // 4] = cv2.resize(self.u, (tw // 2, th // 2),
                                          interpolation=area).reshape(th // 4, tw)
        buf[th + th // 4:] = cv2.resize(self.v, (tw // 2, th // 2),
                                        interpolation=area).reshape(th // 4, tw)
        return cv2.cvtColor(buf, cv2.COLOR_YUV2RGB_I420), w / tw

    def to_video_frame(self) -> Any:
        import av

        h, w = self.y.shape
        vf = av.VideoFrame(w, h, "yuv420p")
        for plane, data in zip(vf.planes, (self.y, self.u, self.v)):
            rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            rows[:data.shape[0], :data.shape[1]] = data
        return vf
