"""Live inputs: cameras (`CameraSource`: RTSP, webcams, files played in real time), reconnecting
with the `Backoff` every live input and output shares, and the reasons a connection failed
told in words (`classify`), credentials never shown (`redact`)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import av.error

from streamguard.io.decode import FrameDecoder, SizeKeeper
from streamguard.io.timeline import JUMP_S

log = logging.getLogger(__name__)


class Backoff:
    """Exponential reconnect delays, shared by camera inputs and RTSP outputs: `failed()`
    returns the delay before the next try (doubling up to `maximum`), `due()` says whether it
    has passed, `reset()` after a success."""

    def __init__(self, initial: float, maximum: float):
        self.initial, self.maximum = initial, maximum
        self._delay = initial
        self._retry_at = 0.0

    def failed(self) -> float:
        delay = self._delay
        self._retry_at = time.monotonic() + delay
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    def due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def retry_in(self) -> float:
        """Seconds until the next try (0 when it is due)."""
        return max(0.0, self._retry_at - time.monotonic())

    def reset(self) -> None:
        self._delay = self.initial
        self._retry_at = 0.0


def redact(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x (for every log line and report)."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def classify(exc: BaseException, camera: bool = False) -> str:
    """A user-facing reason for a failed connection (`camera`: an RTSP camera while it was
    being opened)."""
    text = str(exc)
    low = text.lower()
    if camera and isinstance(exc, av.error.InvalidDataError):
        return "no RTSP answer: the camera is stalled, or no RTSP server listens there"
    if "401" in text or "unauthorized" in low:
        return "bad credentials (401 Unauthorized)"
    if "404" in text or "not found" in low:
        return "stream not found (404): check the URL path"
    if "connection refused" in low:
        return "connection refused: nothing listens at that address"
    if isinstance(exc, FileNotFoundError) or "no such file" in low:
        return "no such device or file: check the input (a webcam is /dev/videoN)"
    if "permission denied" in low:
        return "permission denied: the user cannot open this input (webcams: group 'video')"
    if "timed out" in low or "timeout" in low:
        return "timed out: camera unreachable or stalled"
    return f"{type(exc).__name__}: {redact(text)}"


def is_network_camera(url: str) -> bool:
    return url.startswith(("rtsp://", "rtsps://"))


DEFAULT_INTERVAL = 1 / 30  # a camera that states no frame rate: the common 30 fps


class CameraSource:
    """A live input, read until stopped: an RTSP camera (TCP by default), a webcam
    (/dev/videoN) or a file played in real time (`loop` replays it).

    `run()` calls `on_connect(audio stream or None)` at each connection, then `on_video(frame)`
    for every decoded `av.VideoFrame` and `on_audio(packet)` for every audio packet. On any
    failure or stall (no data for `stall_timeout_s`) it reconnects with `Backoff`, forever,
    logging one line per failure with credentials redacted. An exception raised by a callback
    counts as an input failure too: the input reconnects instead of hanging.

    `probe_s`: how much of a network stream FFmpeg reads to learn its codecs before the first
    frame. FFmpeg's default (up to 5 s; ~0.9 s on an RTSP camera) holds the frames it read and
    hands them over at once when decoding starts: a burst that overflows a short live queue,
    so the first second was dropped at every connection.
    """

    def __init__(self, url: str, stall_timeout_s: float, backoff: Backoff,
                 transport: str = "tcp", loop: bool = False, name: str = "cam",
                 probe_s: float = 0.1):
        self.url, self.name = url, name
        self._probe_s = probe_s
        self._stall_s = stall_timeout_s
        self._backoff = backoff
        self._transport = transport
        self._loop = loop
        self.paced = not (is_network_camera(url) or url.startswith("/dev/video"))
        self.sizes = SizeKeeper(name)  # every connection's frames keep the first one's size
        self.decoder: FrameDecoder | None = None  # this connection's
        self.frame_interval = DEFAULT_INTERVAL  # seconds, from this connection's frame rate
        self.connected = False
        self.reconnects = 0
        self.last_error = ""

    def retry_in(self) -> float:
        """Seconds until the next connection attempt while disconnected."""
        return self._backoff.retry_in()

    def _open(self) -> Any:
        options: dict[str, str] = {}
        fmt = None
        if is_network_camera(self.url):
            options = {"rtsp_transport": self._transport,
                       "timeout": str(int(self._stall_s * 1e6)),
                       "analyzeduration": str(max(int(self._probe_s * 1e6), 1))}
        elif self.url.startswith("/dev/video"):
            fmt = "v4l2"
        return av.open(self.url, format=fmt, options=options, timeout=self._stall_s)

    def run(self, stop: threading.Event, on_connect: Callable[[Any], None],
            on_video: Callable[[Any], None], on_audio: Callable[[Any], None]) -> None:
        """`frames()` with every decoded frame handed to `on_video`."""
        for _ in self.frames(stop, on_connect, on_audio, on_video):
            pass

    def frames(self, stop: threading.Event, on_connect: Callable[[Any], None],
               on_audio: Callable[[Any], None],
               convert: Callable[[Any], Any]) -> Iterator[Any]:
        """Read until stopped, reconnecting: yields `convert(frame)` for every decoded
        `av.VideoFrame` (skipping None). `convert` runs inside the reader's guard: its
        exception is an input failure (the input reconnects)."""
        while not stop.is_set():
            opening = True
            try:
                with self._open() as container:
                    opening = False
                    self.connected = True
                    self._backoff.reset()
                    log.info("%s: connected to %s", self.name, redact(self.url))
                    for vf in self._read(container, stop, on_connect, on_audio):
                        item = convert(vf)
                        if item is not None:
                            yield item
                if self.paced and not self._loop:
                    break  # a file that ended
                if not self.paced:
                    raise EOFError("the stream ended")
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect, never hang
                if not isinstance(exc, (av.error.FFmpegError, OSError, EOFError)):
                    log.exception("%s: unexpected input failure", self.name)
                self.connected = False
                self.last_error = classify(exc, camera=opening and is_network_camera(self.url))
                if stop.is_set():
                    break
                self.reconnects += 1
                delay = self._backoff.failed()
                log.warning("%s: input %s: %s; reconnecting in %.1f s", self.name,
                            redact(self.url), self.last_error, delay)
                stop.wait(delay)
        self.connected = False

    def _read(self, container: Any, stop: threading.Event, on_connect: Callable[[Any], None],
              on_audio: Callable[[Any], None]) -> Iterator[Any]:
        stream = container.streams.video[0]
        # a new decoder per connection: what it outputs before an intact keyframe lacks its
        # references (damaged); the frame size stays the first connection's
        self.decoder = FrameDecoder.for_stream(stream, self.name, keep_size=self.sizes,
                                               start_damaged=True)
        rate = stream.average_rate or stream.guessed_rate
        self.frame_interval = 1 / float(rate) if rate else DEFAULT_INTERVAL
        audio = container.streams.audio[0] if container.streams.audio else None
        on_connect(audio)
        start_wall, start_t, last_t = time.monotonic(), None, None
        for packet in container.demux(*(s for s in (stream, audio) if s is not None)):
            if stop.is_set():
                return
            if packet.stream is not stream:
                if packet.pts is not None and packet.size:
                    on_audio(packet)
                continue
            for vf in self.decoder.decode(packet):
                if self.paced and vf.time is not None:  # a file: keep real time
                    if start_t is None or not last_t <= vf.time <= last_t + JUMP_S:
                        # the first frame, or the file's clock restarted or jumped (joined
                        # recordings): real time goes on from here
                        start_wall, start_t = time.monotonic(), vf.time
                    last_t = vf.time
                    wait = (vf.time - start_t) - (time.monotonic() - start_wall)
                    if wait > 0 and stop.wait(wait):
                        return
                yield vf
