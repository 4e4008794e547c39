"""File inputs (`VideoSource`); live cameras are `streamguard.io.camera`.

Decode anything FFmpeg reads into Frames (RGB, with their pts) and pass-through packets.

`VideoSource` is a context manager. `items()` yields, in demux order, a `Frame` for every
decoded picture of the first video stream and a `Passthrough` for every packet of the other
streams (audio, subtitles, data), so the sink can copy them where they were. The decoder is
flushed at the end (FFmpeg's final empty packet still goes through `decode()`), so no frame is
lost, and a file that yields clearly fewer frames than its header promises is reported as
truncated rather than silently shortened.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamguard.errors import (
    CorruptMediaError,
    InputNotFoundError,
    NotAVideoError,
    UnsupportedCodecError,
)
from streamguard.frames import Frame, Passthrough
from streamguard.io.colour import Colour
from streamguard.io.decode import FrameDecoder, PtsFallback, decoder_errors, ffmpeg_reason
from streamguard.io.timeline import Timeline

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .ts .mts .m2ts .mpg .mpeg .flv .wmv .3gp".split()
)


def _looks_like_media(head: bytes) -> bool:
    """True when the first bytes carry a known container signature."""
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith(b"\x47")  # MPEG-TS sync byte
        or head.startswith(b"FLV")
        or head.startswith(b"\x00\x00\x01\xba")  # MPEG-PS
        or head.startswith(b"\x30\x26\xb2\x75")  # ASF / WMV
    )


@dataclass(frozen=True)
class SourceInfo:
    """What the sink needs to reproduce the input's timing and streams."""

    path: str
    width: int
    height: int
    time_base: Fraction | None
    average_rate: Fraction | None
    frames: int  # from the header; 0 when unknown
    duration_s: float | None
    container_metadata: dict[str, str] = field(default_factory=dict)
    video_metadata: dict[str, str] = field(default_factory=dict)
    copy_streams: tuple[Any, ...] = ()  # input streams to copy packet for packet
    colour: Colour = Colour()  # the video's colour tags: the encoder converts and tags alike

    @property
    def expected_frames(self) -> int:
        if self.frames:
            return self.frames
        if self.duration_s and self.average_rate:
            return int(round(self.duration_s * float(self.average_rate)))
        return 0


class VideoSource:
    """One input file, opened and checked (`open()` or `with`): `info` describes it, `items()`
    decodes it. Refuses missing, empty, non-media, video-less and undecodable inputs with the
    matching error."""

    def __init__(self, path: str | Path, decode_threads: int = 0, skip_corrupt: bool = False,
                 planar: bool = False):
        self.path = Path(path)
        # frames as decoded (PlanarImage) where the format allows, else RGB arrays
        self._planar = planar
        self._decode_threads = decode_threads
        self._skip_corrupt = skip_corrupt
        self._container: av.container.InputContainer | None = None
        self.decoder: FrameDecoder | None = None  # `items()` makes one per pass
        self.timeline: Timeline | None = None  # and one output clock

    def __enter__(self) -> VideoSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> SourceInfo:
        path = self.path
        if not path.exists():
            raise InputNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise NotAVideoError(f"{path}: is a folder, not a video file")
        size = path.stat().st_size
        if size == 0:
            raise NotAVideoError(f"{path}: empty file (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(16)
        try:
            self._container = av.open(str(path), metadata_errors="replace")
        except av.error.FFmpegError as exc:
            if _looks_like_media(head):
                raise CorruptMediaError(
                    f"{path}: damaged or truncated media file ({ffmpeg_reason(exc)})"
                ) from None
            raise NotAVideoError(f"{path}: not a video file ({ffmpeg_reason(exc)})") from None
        container = self._container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            self.close()
            if kinds == ["subtitle"]:  # FFmpeg reads any text file as subtitles
                raise NotAVideoError(f"{path}: not a video file (it reads as text)")
            raise NotAVideoError(f"{path}: no video stream (streams: {', '.join(kinds)})")
        video = container.streams.video[0]
        codec_name = video.codec_context.name if video.codec_context else "unknown"
        if video.codec_context is None or not video.codec_context.is_decoder:
            self.close()
            raise UnsupportedCodecError(f"{path}: no decoder for its video codec ('{codec_name}')")
        if not video.codec_context.width or not video.codec_context.height:
            self.close()
            raise CorruptMediaError(f"{path}: video stream has no frame size (damaged header?)")
        self.video = video
        _warn_unkept(path, video.codec_context.format)
        copy = tuple(
            s for s in container.streams
            if s.index != video.index and s.type in ("audio", "subtitle", "data")
        )
        duration = float(container.duration / av.time_base) if container.duration else None
        self.info = SourceInfo(
            path=str(path),
            width=video.codec_context.width,
            height=video.codec_context.height,
            time_base=video.time_base,
            average_rate=video.average_rate or video.guessed_rate,
            frames=int(video.frames or 0),
            duration_s=duration,
            container_metadata=dict(container.metadata),
            video_metadata=dict(video.metadata),
            copy_streams=copy,
            colour=Colour.of(video),
        )
        return self.info

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def items(self) -> Iterator[Frame | Passthrough]:
        """Frames and pass-through packets in demux order; the decoder is flushed at the end."""
        if self._container is None:
            raise RuntimeError("VideoSource.items() before open()")
        video, info = self.video, self.info
        copy_index = {s.index for s in info.copy_streams}
        fallback = PtsFallback(info)
        # joined recordings and camera restarts: timestamps that go back or jump ahead are
        # put on one increasing clock, audio and subtitles with the video
        timeline = self.timeline = self._timeline()
        still = self.still
        continuity_only = self._container.format.name == "mpegts"
        index = packets = 0
        decoder = self.decoder = FrameDecoder.for_stream(
            video, str(self.path), size=(info.width, info.height),
            threads=self._decode_threads, planar=self._planar, skip_corrupt=self._skip_corrupt)
        try:
            for packet in self._container.demux(video, *info.copy_streams):
                if packet.stream.index == video.index:
                    packets += packet.size > 0
                    if packet.is_corrupt and packet.size and continuity_only:
                        # MPEG-TS flags a packet after any continuity-counter jump: joined
                        # recordings have one at each join, lost packets too; it decodes, and
                        # what lost data damaged until the next keyframe is protected as such
                        decoder.damage.lost()
                    elif packet.is_corrupt and packet.size:
                        # the demuxer says so (a file cut mid-packet, a damaged stream): the
                        # decoder's own error can be lost in its frame threads
                        if not self._skip_corrupt:
                            raise CorruptMediaError(
                                f"{self.path}: damaged or truncated: the video data after frame "
                                f"{index} is cut or damaged (--on-corrupt skip keeps the frames "
                                "that decode)")
                        decoder.skip("the demuxer flagged it damaged")
                        continue
                    # the final empty packet (dts None) flushes the decoder: never skip it
                    if still:  # a JPEG cut short decodes: only the decoder's log says so
                        with decoder_errors() as errors:
                            decoded = decoder.decode(packet)
                        if errors and not self._skip_corrupt:
                            raise CorruptMediaError(
                                f"{self.path}: damaged or truncated image ({errors[0]})")
                    else:
                        decoded = decoder.decode(packet)
                    for vf in decoded:
                        pts, tb = fallback(vf.pts, vf.time_base)
                        pts = timeline.pts(video.index, pts, tb)
                        yield decoder.frame(vf, index, pts, tb,
                                            rotation=int(vf.rotation or 0) if index == 0 else 0)
                        index += 1
                elif packet.stream.index in copy_index and packet.dts is not None:
                    yield self._retimed(packet, timeline)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(
                f"{self.path}: decoding failed after {index} frames ({ffmpeg_reason(exc)})"
            ) from None
        if index == 0:
            raise CorruptMediaError(f"{self.path}: no frame could be decoded")
        if timeline.discontinuities:
            log.warning("%s: the timestamps restart or jump %d time(s) (joined recordings, a "
                        "camera restart); written on one increasing clock", self.path,
                        timeline.discontinuities)
        # A complete file yields every packet its index lists (decoded frames may be fewer:
        # edit lists trim some); a truncated one runs out of data early.
        promised = info.frames
        if promised and packets < promised:
            raise CorruptMediaError(
                f"{self.path}: truncated: it holds {packets} of the {promised} video packets its "
                "header lists"
            )

    @property
    def still(self) -> bool:
        """Whether the input is a still image (JPEG, PNG...), not a video."""
        name = self._container.format.name if self._container is not None else ""
        return name == "image2" or name.endswith("_pipe")

    def _timeline(self, follow: list[Fraction] | None = None) -> Timeline:
        rate = self.info.average_rate
        # the gap a new piece starts after: a frame, where the header's rate is believable
        return Timeline(1 / rate if rate and 1 <= rate <= 240 else Fraction(1, 30),
                        follow=follow)

    @staticmethod
    def _retimed(packet: Any, timeline: Timeline) -> Passthrough:
        """A packet to copy, its dts (and pts, by as much) on the output clock. Audio is
        dense (a jump ahead is a discontinuity); subtitles and data may pause for minutes."""
        dts = timeline.pts(packet.stream.index, packet.dts, packet.time_base,
                           dense=packet.stream.type == "audio")
        if dts != packet.dts:
            if packet.pts is not None:
                packet.pts += dts - packet.dts
            packet.dts = dts
        return Passthrough(packet, packet.stream.index)

    @property
    def frames_rescaled(self) -> int:
        """Frames whose size differed from the stream's first (rescaled to it)."""
        return self.decoder.rescaled if self.decoder is not None else 0

    @property
    def packets_skipped(self) -> int:
        """Damaged video packets skipped (`skip_corrupt`)."""
        return self.decoder.packets_skipped if self.decoder is not None else 0

    def passthrough(self, follow: list[Fraction] | None = None) -> Iterator[Passthrough]:
        """Only the packets of the streams to copy (audio, subtitles, data), in demux order,
        retimed across discontinuities with the video's piece offsets when given (`follow`:
        the video was retimed elsewhere)."""
        if self._container is None:
            raise RuntimeError("VideoSource.passthrough() before open()")
        if not self.info.copy_streams:
            return
        timeline = self._timeline(follow)
        try:
            for packet in self._container.demux(*self.info.copy_streams):
                if packet.dts is not None:
                    yield self._retimed(packet, timeline)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(
                f"{self.path}: demuxing failed ({ffmpeg_reason(exc)})") from None


def _warn_unkept(path: Path, fmt: Any) -> None:
    """Say what the output will not keep: transparency, and depth beyond 8 bits (outputs are
    opaque 8-bit)."""
    if fmt is None:
        return
    if any(c.is_alpha for c in fmt.components):
        log.warning("%s: its transparency (alpha) is not kept: the output is opaque", path)
    bits = max((c.bits for c in fmt.components), default=8)
    if bits > 8:
        log.warning("%s: its %d-bit depth is not kept: the output is 8-bit", path, bits)


def find_videos(folder: Path) -> list[Path]:
    """Video files under a folder, recursively, sorted; hidden files skipped."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
