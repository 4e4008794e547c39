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
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

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
    def _open(self, first: Frame) -> None:
        ext = self.path.suffix.lower()
        fmt = {".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".m4v": "mp4"}.get(ext)
        try:
            container = av.open(str(self._tmp), "w", format=fmt)
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot write this container ({exc})") from None
        self._container = container
        info, cfg = self.info, self.cfg
        rate = info.average_rate or 30
        if ext == ".avi" and self.codec == "libx264":
            # FFmpeg reads H.264-in-AVI back one frame late (it guesses pts from dts); AVI's
            # native MPEG-4 Part 2 keeps every timestamp
            log.info("%s: AVI output: encoding MPEG-4 Part 2 instead of H.264", self.path)
            self.codec = "mpeg4"
        try:
            video = container.add_stream(self.codec, rate=rate)
        except ValueError as exc:
            if ext != ".webm":
                raise OutputError(f"{self.path}: {exc}; choose another encode.codec or an .mkv "
                                  "output") from None
            # WebM holds only VP8/VP9/AV1: keep the user's container, switch the codec
            log.warning("%s: WebM cannot hold %s; encoding VP9 instead (slower)", self.path,
                        self.codec)
            self.codec = "libvpx-vp9"
            video = container.add_stream(self.codec, rate=rate)
        video.width, video.height = first.image.shape[1], first.image.shape[0]
        video.pix_fmt = cfg.pix_fmt
        if first.time_base is not None:
            video.codec_context.time_base = first.time_base
            video.time_base = first.time_base
        options = dict(cfg.options)
        if self.codec in ("libx264", "libx265"):
            options.setdefault("crf", str(cfg.crf))
            options.setdefault("preset", cfg.preset)
        elif self.codec.endswith("_nvenc"):
            options.setdefault("cq", str(cfg.crf))
        elif self.codec == "libvpx-vp9":
            options.setdefault("crf", str(min(cfg.crf + 10, 63)))
            options.setdefault("b", "0")
            options.setdefault("deadline", "realtime")
            options.setdefault("cpu-used", "8")
        video.codec_context.options = options
        if ext == ".avi":
            # AVI stores no presentation timestamps: B-frame reordering would scramble them
            video.codec_context.max_b_frames = 0
        if self.codec == "mpeg4":
            video.codec_context.qscale = 3  # near-transparent quality for MPEG-4 Part 2
        rotation = first.meta.get("rotation") or 0
        if rotation:
            video.set_display_rotation(rotation)
        for key, value in info.video_metadata.items():
            if key not in ("handler_name", "encoder", "vendor_id"):
                video.metadata[key] = value
        for key, value in info.container_metadata.items():
            if key not in _SKIP_METADATA:
                container.metadata[key] = value
        self._video = video
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
            self._open(frame)
            for item in self._pending:
                self.passthrough(item)
            self._pending.clear()
        vf = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        vf.pts = frame.pts
        if frame.time_base is not None:
            vf.time_base = frame.time_base
        self._mux(self._video.encode(vf))
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
