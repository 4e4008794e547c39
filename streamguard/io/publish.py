"""Live outputs: RTSP publish (`RtspPublisher`, reopened with backoff) and rolling recordings
(`SegmentRecorder`), each through a `LiveEncoder` built like a file output's
(`io.encode.add_video_stream`, from `live.encode`), with the camera's audio copied packet for
packet. Every live output runs on one 90 kHz clock (`LIVE_TIME_BASE`).
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamguard.config import EncodeConfig
from streamguard.frames import Frame
from streamguard.io.colour import Colour
from streamguard.io.encode import add_video_stream, resolve_encoder, to_video_frame
from streamguard.io.camera import Backoff, classify, redact
from streamguard.io.source import SourceInfo

log = logging.getLogger(__name__)

LIVE_TIME_BASE = Fraction(1, 90000)  # every live output's clock


class AudioTemplate:
    """A camera's audio stream parameters, kept alive after its connection closes (outputs
    reopened later still need them): a stream of an in-memory container that is never
    written."""

    def __init__(self, stream: Any):
        import io

        self._holder = av.open(io.BytesIO(), "w", format="nut")  # NUT takes any codec
        self.stream = self._holder.add_stream_from_template(stream)
        self.codec = stream.codec_context.name

    def close(self) -> None:
        self._holder.close()


class LiveEncoder:
    """A live output's encoder writing into a PyAV container (an RTSP publish or a
    recording), plus the camera's audio copied packet for packet when the container takes it.
    Built by `add_video_stream` from `EncodeConfig` (`live.encode`), exactly as a file
    output's; frames come on the live 90 kHz clock, tagged with the first frame's colour."""

    def __init__(self, target: str, fmt: str | None, first: Frame, cfg: EncodeConfig,
                 options=None, audio: Any = None, path: Path | None = None):
        self.container = av.open(target, "w", format=fmt, options=options or {})
        h, w = first.image.shape[:2]
        self._colour = first.colour or Colour()
        info = SourceInfo(path=target, width=w, height=h, time_base=LIVE_TIME_BASE,
                          average_rate=Fraction(30), frames=0, duration_s=None,
                          colour=self._colour)
        # `path`: the output's final name, whose extension picks per-container settings
        self.stream, self.codec = add_video_stream(
            self.container, path or Path(target), resolve_encoder(cfg.codec), info, cfg, w, h,
            time_base=LIVE_TIME_BASE)
        self.audio = None
        self._audio_last = -1
        if audio is not None:
            try:
                self.audio = self.container.add_stream_from_template(audio)
                self.audio.time_base = LIVE_TIME_BASE
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("%s: cannot carry the camera's %s audio (%s); video only", target,
                            audio.codec_context.name, exc)

    def write(self, frame: Frame) -> None:
        vf = to_video_frame(frame.image, self.stream.width, self.stream.height, frame.pts,
                            LIVE_TIME_BASE, self.stream.pix_fmt, self._colour)
        self.container.mux(self.stream.encode(vf))

    def write_audio(self, packet: Any, pts: int) -> None:
        if self.audio is None:
            return
        pts = max(pts, self._audio_last + 1)
        self._audio_last = pts
        packet.stream = self.audio
        packet.time_base = LIVE_TIME_BASE
        packet.pts = packet.dts = pts
        packet.duration = 0
        self.container.mux(packet)

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class RtspPublisher:
    """Publishes to an RTSP server (ANNOUNCE/RECORD); reopens with backoff when it goes away.
    Frames written while it is away are not delivered there (counted in `failures`)."""

    def __init__(self, url: str, backoff: Backoff, audio: Any = None,
                 encode: EncodeConfig | None = None):
        self.url = url
        self._encode = encode or EncodeConfig()
        self.audio = audio  # the camera's audio stream (a template), or None
        self._enc: LiveEncoder | None = None
        self._backoff = backoff
        self.failures = 0
        self.last_failure = ""  # why the last try failed; "" while it delivers

    def write(self, frame: Frame, placeholder: bool) -> None:
        if self._enc is None:
            if not self._backoff.due():
                return
            try:
                self._enc = LiveEncoder(self.url, "rtsp", frame, self._encode,
                                        {"rtsp_transport": "tcp"}, audio=self.audio)
                log.info("publishing to %s", redact(self.url))
            except (av.error.FFmpegError, OSError) as exc:
                self._fail(exc)
                return
        try:
            self._enc.write(frame)
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(exc)
            return
        # only a frame delivered proves the target works (opening succeeds before the server
        # is asked anything: resetting there retried a refusing server every 0.5 s)
        self._backoff.reset()
        self.last_failure = ""

    def write_audio(self, packet: Any, pts: int) -> None:
        if self._enc is None:
            return  # not publishing right now: the audio waits for no one
        try:
            self._enc.write_audio(packet, pts)
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        delay = self._backoff.failed()
        self.last_failure = f"publish {redact(self.url)}: {classify(exc)}"
        log.warning("RTSP output %s: %s; retrying in %.1f s", redact(self.url), classify(exc),
                    delay)
        if self._enc is not None:
            try:
                self._enc.container.close()
            except (av.error.FFmpegError, OSError):
                log.debug("closing a broken RTSP output failed too")
            self._enc = None

    def close(self) -> None:
        if self._enc is not None:
            try:
                self._enc.close()
            except (av.error.FFmpegError, OSError) as exc:
                log.debug("RTSP output close: %s", exc)
            self._enc = None


class SegmentRecorder:
    """Rolling mp4/mkv files of `segment_s` seconds, each finalized (playable) when it ends;
    a segment being written has a hidden temporary name."""

    def __init__(self, folder: str, name: str, segment_s: float, audio: Any = None,
                 fmt: str = "mp4", encode: EncodeConfig | None = None):
        self.audio = audio
        self._encode = encode or EncodeConfig()
        self.ext, self._format = (".mkv", "matroska") if fmt == "mkv" else (".mp4", "mp4")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name, self.segment_s = name, segment_s
        self._enc: LiveEncoder | None = None
        self._start_pts = 0
        self._tmp: Path | None = None
        self._final: Path | None = None
        self.files: list[Path] = []

    def write(self, frame: Frame, placeholder: bool) -> None:
        if (self._enc is not None
                and (frame.pts - self._start_pts) * LIVE_TIME_BASE >= self.segment_s):
            self._finish()
        if self._enc is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            final = self.folder / f"{self.name}-{stamp}-{len(self.files):04d}{self.ext}"
            self._tmp = final.with_name(f".{final.name}.partial")
            self._enc = LiveEncoder(str(self._tmp), self._format, frame, self._encode,
                                    audio=self.audio, path=final)
            self._start_pts = frame.pts
            self._final = final
        self._enc.write(frame)

    def write_audio(self, packet: Any, pts: int) -> None:
        # audio a little older than a segment's first frame belongs to the previous segment,
        # except in the first one, which has none (its first packet used to be lost)
        if self._enc is not None and (pts >= self._start_pts or not self.files):
            self._enc.write_audio(packet, pts)

    def _finish(self) -> None:
        self._enc.close()
        self._tmp.rename(self._final)
        self.files.append(self._final)
        self._enc = None

    def close(self) -> None:
        if self._enc is not None:
            self._finish()
