"""Encode protected frames and copy the other streams into a new file, atomically.

Output goes to a hidden temporary file in the output folder and is renamed onto the final name
only by `finish()`; `abort()` (or leaving the `with` block on an error) deletes it, so nothing
that looks complete is ever left behind by a failed run.

Timing: every frame is encoded with its input pts and time_base (the encoder and the output
stream use the input's time base), so timestamps survive exactly, VFR included. Audio,
subtitle and data packets are muxed unchanged (byte-identical) from stream templates.
Hazard: the container header is written at the first mux, so streams, metadata and rotation are
all set up on the first frame (which carries the rotation) before anything is muxed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from streamguard.config import EncodeConfig
from streamguard.errors import OutputError, UnsupportedCodecError
from streamguard.frames import Frame, Passthrough
from streamguard.io.source import SourceInfo

log = logging.getLogger(__name__)

# container-level keys the muxer writes itself; copying them would describe the old encode
_SKIP_METADATA = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}
_NVENC = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265"}


def resolve_encoder(name: str) -> str:
    """The encoder to use: NVENC only when asked and usable, else its software twin."""
    if name not in av.codecs_available:
        raise UnsupportedCodecError(f"encoder '{name}' is not available in this FFmpeg build")
    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise UnsupportedCodecError(f"'{name}' is not an encoder") from None
    if codec.type != "video":
        raise UnsupportedCodecError(f"'{name}' is not a video encoder")
    if name in _NVENC and not _nvenc_usable(name):
        log.warning("%s is not usable here (no NVIDIA GPU/driver); using %s", name, _NVENC[name])
        return _NVENC[name]
    return name


def _nvenc_usable(name: str) -> bool:
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.open()
        return True
    except Exception as exc:  # any failure to open the GPU encoder means "not usable"
        log.debug("NVENC probe failed: %s", exc)
        return False


def check_writable(path: Path) -> None:
    """Fail early, before decoding anything, when the output cannot be written."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output folder ({exc.strerror})") from None
    if path.is_dir():
        raise OutputError(f"{path}: output path is a folder")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder is not writable")


def encodable_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """The smallest size >= (width, height) the pixel format can hold: chroma-subsampled
    formats (yuv420p: both sides, yuv422p: the width) need even sides."""
    try:
        fmt = av.VideoFormat(pix_fmt, width, height)
    except (ValueError, av.error.FFmpegError):
        raise UnsupportedCodecError(f"unknown pixel format '{pix_fmt}'") from None
    chroma = [c for c in fmt.components if c.is_chroma]
    step_w = 2 if chroma and width > 1 and chroma[0].width < width else 1
    step_h = 2 if chroma and height > 1 and chroma[0].height < height else 1
    return -(-width // step_w) * step_w, -(-height // step_h) * step_h


def pad_to(image: Any, width: int, height: int) -> Any:
    """Grow an RGB frame to (width, height) by repeating its last column/row (odd sizes)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


_FORMATS = {".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".m4v": "mp4"}


def add_video_stream(container: Any, path: Path, codec: str, info: SourceInfo,
                     cfg: EncodeConfig, width: int, height: int, rotation: int = 0,
                     time_base: Fraction | None = None) -> tuple[Any, str]:
    """Add the protected video stream to `container`: returns (stream, codec actually used).

    One place decides every encoder setting, so packets encoded elsewhere (`PacketEncoder`, on
    another machine) carry exactly the headers of the stream they are muxed into.
    """
    ext = path.suffix.lower()
    rate = info.average_rate or 30
    if ext == ".avi" and codec == "libx264":
        # FFmpeg reads H.264-in-AVI back one frame late (it guesses pts from dts); AVI's
        # native MPEG-4 Part 2 keeps every timestamp
        log.info("%s: AVI output: encoding MPEG-4 Part 2 instead of H.264", path)
        codec = "mpeg4"
    try:
        video = container.add_stream(codec, rate=rate)
    except ValueError as exc:
        if ext != ".webm":
            raise OutputError(f"{path}: {exc}; choose another encode.codec or an .mkv "
                              "output") from None
        # WebM holds only VP8/VP9/AV1: keep the user's container, switch the codec
        log.warning("%s: WebM cannot hold %s; encoding VP9 instead (slower)", path, codec)
        codec = "libvpx-vp9"
        video = container.add_stream(codec, rate=rate)
    padded = encodable_size(cfg.pix_fmt, width, height)
    if padded != (width, height):
        log.warning("%s: %dx%d frames cannot be encoded as %s; padded to %dx%d by repeating the "
                    "last column/row", path, width, height, cfg.pix_fmt, *padded)
    video.width, video.height = padded
    video.pix_fmt = cfg.pix_fmt
    time_base = time_base or info.time_base
    if time_base is not None:
        video.codec_context.time_base = time_base
        video.time_base = time_base
    options = dict(cfg.options)
    if codec in ("libx264", "libx265"):
        options.setdefault("crf", str(cfg.crf))
        options.setdefault("preset", cfg.preset)
    elif codec.endswith("_nvenc"):
        options.setdefault("cq", str(cfg.crf))
    elif codec == "libvpx-vp9":
        options.setdefault("crf", str(min(cfg.crf + 10, 63)))
        options.setdefault("b", "0")
        options.setdefault("deadline", "realtime")
        options.setdefault("cpu-used", "8")
    video.codec_context.options = options
    if ext == ".avi":
        # AVI stores no presentation timestamps: B-frame reordering would scramble them
        video.codec_context.max_b_frames = 0
    if codec == "mpeg4":
        video.codec_context.qscale = 3  # near-transparent quality for MPEG-4 Part 2
    if rotation:
        video.set_display_rotation(rotation)
    for key, value in info.video_metadata.items():
        if key not in ("handler_name", "encoder", "vendor_id"):
            video.metadata[key] = value
    return video, codec


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded video packet, detached from any container (picklable)."""

    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction
    key: bool


class PacketEncoder:
    """Encodes frames exactly as a `VideoSink` writing `path` would, keeping the packets.

    Used where the encoding runs away from the output file (a Ray worker); the packets are
    muxed later with `VideoSink.write_encoded`. No file is created: the container is only a
    template that gives the encoder the output format's flags (e.g. global headers for mp4).
    """

    def __init__(self, path: str | Path, info: SourceInfo, cfg: EncodeConfig,
                 width: int, height: int, time_base: Fraction | None = None):
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path), "w",
                                      format=_FORMATS.get(self.path.suffix.lower()))
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot write this container ({exc})") from None
        self._video, self.codec = add_video_stream(
            self._container, self.path, resolve_encoder(cfg.codec), info, cfg, width, height,
            time_base=time_base)

    def encode(self, frame: Frame | None) -> list[EncodedPacket]:
        """Encode one frame (None flushes the encoder)."""
        vf = None
        if frame is not None:
            image = pad_to(frame.image, self._video.width, self._video.height)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts = frame.pts
            if frame.time_base is not None:
                vf.time_base = frame.time_base
        try:
            packets = self._video.encode(vf)
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: encoding failed ({exc})") from None
        return [EncodedPacket(bytes(p), p.pts, p.dts, p.time_base, p.is_keyframe)
                for p in packets]

    @property
    def extradata(self) -> bytes:
        return bytes(self._video.codec_context.extradata or b"")

    def close(self) -> None:
        self._container = None  # never started: nothing was opened or written


class VideoSink:
    def __init__(self, path: str | Path, info: SourceInfo, cfg: EncodeConfig):
        self.path = Path(path)
        self.info = info
        self.cfg = cfg
        self.codec = resolve_encoder(cfg.codec)
        check_writable(self.path)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._container: av.container.OutputContainer | None = None
        self._video: Any = None
        self._stream_map: dict[int, Any] = {}
        self._pending: list[Passthrough] = []  # packets seen before the first frame
        self.frames_written = 0
        self.packets_copied = 0
        self.dropped_streams: list[str] = []
        self._done = False

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._done:
            self.abort()

    # -- setup on the first frame ---------------------------------------------------------
    def open(self, width: int, height: int, rotation: int = 0,
             time_base: Fraction | None = None) -> None:
        """Create the container and its streams (done by the first `write` when not called)."""
        ext = self.path.suffix.lower()
        try:
            container = av.open(str(self._tmp), "w", format=_FORMATS.get(ext))
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot write this container ({exc})") from None
        self._container = container
        info = self.info
        self._video, self.codec = add_video_stream(
            container, self.path, self.codec, info, self.cfg, width, height, rotation, time_base)
        for key, value in info.container_metadata.items():
            if key not in _SKIP_METADATA:
                container.metadata[key] = value
        for stream in info.copy_streams:
            try:
                self._stream_map[stream.index] = container.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError) as exc:
                self._refuse_stream(stream, str(exc))
        try:
            container.start_encoding()
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(
                f"{self.path}: the {ext or 'output'} container cannot hold these streams "
                f"({exc}); try .mkv"
            ) from None
        for item in self._pending:
            self.passthrough(item)
        self._pending.clear()

    @property
    def extradata(self) -> bytes:
        """The video encoder's global header (SPS/PPS...), b"" when the format keeps it inline."""
        return bytes(self._video.codec_context.extradata or b"") if self._video else b""

    def _refuse_stream(self, stream: Any, why: str) -> None:
        desc = f"#{stream.index} {stream.type}/{stream.codec_context.name if stream.codec_context else '?'}"
        if stream.type == "audio" and not self.cfg.drop_uncopyable_audio:
            raise OutputError(
                f"{self.path}: cannot copy audio stream {desc} into {self.path.suffix} ({why}); "
                "use a container that holds it (.mkv) or set encode.drop_uncopyable_audio=true"
            )
        log.warning("dropping stream %s: the output container refuses it (%s)", desc, why)
        self.dropped_streams.append(desc)

    # -- writing ----------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        if self._container is None:
            self.open(frame.image.shape[1], frame.image.shape[0],
                      frame.meta.get("rotation") or 0, frame.time_base)
        image = pad_to(frame.image, self._video.width, self._video.height)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts = frame.pts
        if frame.time_base is not None:
            vf.time_base = frame.time_base
        self._mux(self._video.encode(vf))
        self.frames_written += 1

    def write_encoded(self, packet: EncodedPacket) -> None:
        """Mux a packet encoded elsewhere with this sink's settings (see `PacketEncoder`)."""
        if self._container is None:
            raise OutputError(f"{self.path}: write_encoded() before open()")
        pkt = av.Packet(packet.data)
        pkt.pts, pkt.dts = packet.pts, packet.dts
        pkt.time_base = packet.time_base
        pkt.is_keyframe = packet.key
        pkt.stream = self._video
        self._mux([pkt])
        self.frames_written += 1

    def passthrough(self, item: Passthrough) -> None:
        if self._container is None:
            self._pending.append(item)
            return
        stream = self._stream_map.get(item.stream_index)
        if stream is None:
            return
        item.packet.stream = stream
        self._mux([item.packet])
        self.packets_copied += 1

    def _mux(self, packets: Any) -> None:
        try:
            self._container.mux(packets)
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: writing failed ({exc})") from None
        except OSError as exc:
            raise OutputError(f"{self.path}: writing failed ({exc.strerror})") from None

    def finish(self) -> Path:
        """Flush the encoder, close the file and move it onto its final name."""
        if self._container is None:
            raise OutputError(f"{self.path}: no frame was written")
        self._mux(self._video.encode(None))
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        """Close and delete the partial output."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                log.debug("closing a partial output failed: %s", exc)
            self._container = None
        self._tmp.unlink(missing_ok=True)
        self._done = True
