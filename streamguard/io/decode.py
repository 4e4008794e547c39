"""The one video decoder: files (`VideoSource`), Ray segments and live cameras all decode
through a `FrameDecoder`, so a decoded picture becomes a Frame the same way everywhere.

A `FrameDecoder` wraps one codec context (a demuxed stream's, or one made from a segment's
parameters) and does what every path needs of it:
- decoder threads (`threads`, 0 = FFmpeg's choice; frame and slice threading);
- damaged packets: raised (the caller says what failed), or skipped with `skip_corrupt`
  (counted in `packets_skipped`, and the frames after them flagged damaged);
- `frame(vf, ...)`: the picture flagged damaged (`Damage`), rescaled to the stream's first
  size (`SizeKeeper`, shared across a camera's connections), as its planes (`PlanarImage`,
  `planar`) or RGB.
Timing stays with the caller: files and segments fill gaps with `PtsFallback`, cameras put the
connection's offset on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import av.error

from streamguard.frames import Frame, PlanarImage

if TYPE_CHECKING:
    from streamguard.io.source import SourceInfo

log = logging.getLogger(__name__)


class FrameDecoder:
    """Packets in, `av.VideoFrame`s out (`decode`), and those as Frames (`frame`)."""

    def __init__(self, ctx: Any, label: str, *, size: tuple[int, int] | None = None,
                 keep_size: SizeKeeper | None = None, threads: int = 0,
                 planar: bool = False, skip_corrupt: bool = False,
                 start_damaged: bool = False):
        ctx.thread_type = "AUTO"
        if threads:
            ctx.thread_count = threads
        self.ctx = ctx
        self.label = label
        self.keep_size = keep_size if keep_size is not None else SizeKeeper(label, size)
        self.damage = Damage(start_damaged=start_damaged)
        self._planar = planar
        self._skip_corrupt = skip_corrupt
        self.packets_skipped = 0
        self.decoded = 0

    @classmethod
    def for_stream(cls, stream: Any, label: str, **options: Any) -> FrameDecoder:
        """The decoder of a demuxed video stream."""
        return cls(stream.codec_context, label, **options)

    @classmethod
    def for_codec(cls, codec: str, label: str, *, extradata: bytes = b"", width: int = 0,
                  height: int = 0, pix_fmt: str | None = None, **options: Any) -> FrameDecoder:
        """A decoder made from stream parameters (packets demuxed elsewhere: a segment).
        Raises ValueError or av's error when FFmpeg has no such decoder."""
        ctx = av.CodecContext.create(codec, "r")
        if extradata:
            ctx.extradata = extradata
        ctx.width, ctx.height = width, height
        if pix_fmt:
            ctx.pix_fmt = pix_fmt
        return cls(ctx, label, size=(width, height) if width and height else None, **options)

    @property
    def rescaled(self) -> int:
        return self.keep_size.rescaled

    def decode(self, packet: Any) -> list[Any]:
        """The frames this packet completes (None, or FFmpeg's final empty packet, flushes).
        A damaged packet raises av's error, or with `skip_corrupt` is skipped and counted."""
        try:
            frames = self.ctx.decode(packet)
        except av.error.FFmpegError as exc:
            if not self._skip_corrupt:
                raise
            self.skip(ffmpeg_reason(exc))
            return []
        self.decoded += len(frames)
        return frames

    def skip(self, why: str) -> None:
        """Leave a damaged packet out (`skip_corrupt`): counted, and the frames after it
        flagged damaged."""
        if not self.packets_skipped:
            log.warning("%s: a damaged video packet after frame %d (%s); skipping damaged "
                        "packets", self.label, self.decoded, why)
        self.packets_skipped += 1
        self.damage.lost()

    def frame(self, vf: Any, index: int, pts: int, time_base: Fraction,
              damaged: bool | None = None, **fields: Any) -> Frame:
        """A decoded picture as a Frame (its damage read now unless given: `damaged`, for
        frames converted later than decoded)."""
        if damaged is None:
            damaged = self.damage(vf)
        vf = self.keep_size(vf)
        image = PlanarImage.from_video_frame(vf) if self._planar else None
        if image is None:
            image = vf.to_ndarray(format="rgb24")
        return Frame(index, pts, time_base, image, damaged=damaged, **fields)


def nvdec_usable(name: str) -> bool:
    """Whether an NVIDIA decoder (h264_cuvid...) opens here (a GPU and its driver)."""
    try:
        av.CodecContext.create(name, "r").open()
        return True
    except Exception as exc:  # any failure to open the GPU decoder means "not usable"
        log.debug("NVDEC probe failed: %s", exc)
        return False


@contextmanager
def decoder_errors() -> Iterator[list[str]]:
    """The errors FFmpeg logs on this thread inside the block. FFmpeg's log level is raised
    to ERROR for the block only; streamguard keeps it silent otherwise."""
    errors: list[str] = []
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield errors
        errors += [msg.strip() for lvl, _, msg in logs if lvl <= av.logging.ERROR]
    finally:
        av.logging.set_level(level)


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's reason for an error, without the path it names."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip()


class Damage:
    """Which decoded frames show damage the decoder had to patch over.

    A frame the decoder flagged (`is_corrupt`: lost or unreadable data concealed) is damaged,
    and so is every frame after it until the next intact keyframe: they are predicted from the
    patched picture and carry its smears, in which a face can be half there, half gone (the
    detector misses it; its mouth or eyes show bare). A skipped packet (`lost()`) starts the
    same run. `start_damaged`: frames before the first intact keyframe are damaged too (a live
    decoder joined mid-stream). A run ends after `MAX_RUN` frames at most, so a stream without
    keyframes (intra refresh) is not damaged for good.
    """

    MAX_RUN = 300  # frames: 10 s at 30 fps, longer than cameras' usual keyframe intervals

    def __init__(self, start_damaged: bool = False):
        self._left = self.MAX_RUN if start_damaged else 0

    def lost(self) -> None:
        """Data was dropped before the decoder saw it (a skipped packet)."""
        self._left = self.MAX_RUN

    def __call__(self, vf: Any) -> bool:
        """Whether this frame, the next the decoder gives, is damaged."""
        if getattr(vf, "is_corrupt", False):
            self._left = self.MAX_RUN
        elif getattr(vf, "key_frame", False):
            self._left = 0
        if self._left <= 0:
            return False
        self._left -= 1
        return True


class SizeKeeper:
    """Keeps decoded frames at one size: a frame whose size changed mid-stream (an IP
    camera's, a concatenated recording's) is rescaled (libswscale, timing kept) to the first
    size, so one output holds them all. Warns once; `rescaled` counts such frames."""

    def __init__(self, label: str, size: tuple[int, int] | None = None):
        self.label = label
        self.size = size  # (width, height); None: the first frame's
        self.rescaled = 0

    def __call__(self, vf: Any) -> Any:
        if self.size is None:
            self.size = (vf.width, vf.height)
        if (vf.width, vf.height) == self.size:
            return vf
        if not self.rescaled:
            log.warning("%s: the frame size changes (%dx%d -> %dx%d); such frames are "
                        "rescaled to %dx%d", self.label, *self.size, vf.width, vf.height,
                        *self.size)
        self.rescaled += 1
        out = vf.reformat(width=self.size[0], height=self.size[1])
        out.pts = vf.pts
        if vf.time_base is not None:  # a segment's decoder (no stream) gives frames none
            out.time_base = vf.time_base
        return out


class PtsFallback:
    """Fills in pts for the rare frames decoded without one, continuing the last step."""

    def __init__(self, info: SourceInfo):
        self._tb = info.time_base or (
            1 / info.average_rate if info.average_rate else Fraction(1, 30)
        )
        rate = info.average_rate or Fraction(30)
        self._step = max(int(round(1 / (rate * self._tb))), 1)
        self._last: int | None = None

    def __call__(self, pts: int | None, tb: Fraction | None) -> tuple[int, Fraction]:
        tb = tb or self._tb
        if pts is None:
            pts = 0 if self._last is None else self._last + self._step
        self._last = pts
        return pts, tb
