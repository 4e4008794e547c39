"""File outputs (`VideoSink`, atomically) and segments encoded elsewhere (`PacketEncoder`);
the live outputs are `streamguard.io.publish`.

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
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamguard.config import EncodeConfig
from streamguard.errors import CorruptMediaError, OutputError
from streamguard.frames import Frame, Passthrough
from streamguard.io.encode import (
    IMAGE_ENCODERS, add_video_stream, container_format, container_options, resolve_encoder,
    to_video_frame,
)
from streamguard.io.source import SourceInfo

log = logging.getLogger(__name__)

# container-level keys the muxer writes itself; copying them would describe the old encode
_SKIP_METADATA = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration"}


def check_writable(path: Path) -> list[Path]:
    """Fail early, before decoding anything or loading a model, when the output cannot be
    written: its folder is created (the `OutputLock` file opened in it next is the real write
    test: permission bits say nothing for root, /proc or a read-only mount). Returns the
    folders it created, innermost first (a failed run removes them again)."""
    folder = path.parent
    made = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        made.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: cannot create the folder "
                          f"({exc.strerror})") from None
    if path.is_dir():
        remove_empty(made)
        raise OutputError(f"{path}: cannot write: the output path is a folder")
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove folders a failed run created, innermost first, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or gone): keep it and everything above it


class OutputLock:
    """Holds `.NAME.lock` next to an output while a run writes it, so two runs never write
    the same output: the second fails at once with a clear error (exit 8) instead of both
    producing a mix. The lock is an flock, released by the kernel if the process dies."""

    def __init__(self, path: Path, what: str = "this output"):
        import fcntl

        self.file = path.with_name(f".{path.name.lstrip('.')}.lock")
        try:
            self._fd = os.open(self.file, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write here ({exc.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise OutputError(f"{path}: another streamguard run is writing {what}; wait for "
                              "it to end or choose another output") from None

    def release(self) -> None:
        if self._fd < 0:
            return
        self.file.unlink(missing_ok=True)
        os.close(self._fd)  # closing drops the flock
        self._fd = -1


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
                                      format=container_format(self.path))
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot write this container ({exc})") from None
        self._video, self.codec = add_video_stream(
            self._container, self.path, resolve_encoder(cfg.codec), info, cfg, width, height,
            time_base=time_base)
        self._colour = info.colour

    def encode(self, frame: Frame | None) -> list[EncodedPacket]:
        """Encode one frame (None flushes the encoder)."""
        vf = None
        if frame is not None:
            vf = to_video_frame(frame.image, self._video.width, self._video.height, frame.pts,
                                frame.time_base, self._video.pix_fmt, self._colour)
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
    """An output video file: protected frames encoded with their input pts, the input's other
    streams copied packet for packet, written to a hidden temporary name and moved onto the
    final name only by `finish()`. A context manager: leaving it without `finish()` deletes
    the partial file."""

    def __init__(self, path: str | Path, info: SourceInfo, cfg: EncodeConfig):
        self.path = Path(path)
        self.info = info
        self.cfg = cfg
        self.codec = resolve_encoder(cfg.codec)
        self._made = check_writable(self.path)
        try:
            self._lock = OutputLock(self.path)
        except OutputError:
            remove_empty(self._made)
            raise
        # holding the lock, any temporary file of this output is a killed run's: remove it
        for stale in self.path.parent.glob(f".{self.path.stem}.*.partial{self.path.suffix}"):
            stale.unlink(missing_ok=True)
        # unique per run: even a run that ignored the lock could not write into ours
        token = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._tmp = self.path.with_name(f".{self.path.stem}.{token}.partial{self.path.suffix}")
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
            container = av.open(str(self._tmp), "w", format=container_format(self.path),
                                options=container_options(self.path))
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
        image = self.path.suffix.lower() in IMAGE_ENCODERS  # a GIF or image: no audio, asked for
        if stream.type == "audio" and stream.codec_context is None and not (
                self.cfg.drop_uncopyable_audio or image):
            # the input's fault, not the output's: its header does not say what the audio is
            raise CorruptMediaError(
                f"{self.info.path}: audio stream #{stream.index} is damaged (FFmpeg cannot tell "
                "its codec); set encode.drop_uncopyable_audio=true to write the video without it")
        if stream.type == "audio" and not self.cfg.drop_uncopyable_audio and not image:
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
                      frame.rotation, frame.time_base)
        vf = to_video_frame(frame.image, self._video.width, self._video.height, frame.pts,
                            frame.time_base, self._video.pix_fmt, self.info.colour)
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
        self._lock.release()
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
        self._lock.release()
        remove_empty(self._made)
