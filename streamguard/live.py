"""`streamguard serve`: live camera feeds in, only protected frames out.

One `LiveStream` per camera, each with two threads:
- the reader decodes the input (RTSP over TCP by default, a webcam, or a file paced in real
  time) into a drop-oldest queue: when processing falls behind, the oldest waiting frame is
  dropped and counted, which bounds the added latency. On an error or a stall it reconnects
  with exponential backoff, forever, logging one clear line per failure (credentials redacted);
- the worker detects, tracks and protects each frame (fail-closed like the offline pipeline)
  and hands it to the outputs: RTSP publish (H.264), ZeroMQ PUB (header + pixels) and rolling
  mp4 segments. While the camera is away it emits placeholder frames (black or the last
  protected frame) so the outputs keep their clock. Output timestamps come from one monotonic
  clock per stream (90 kHz), so they never go backwards across reconnects.
A failing output (an RTSP server that went away) is reopened with backoff; frames meanwhile
are counted as not delivered there and never replaced by unprotected ones.

Timing: output pts = the input's own timestamp plus one offset per connection (anchored on the
wall clock when the connection starts), so the camera's audio, copied packet for packet into
the RTSP and recorded outputs, keeps its sync with the video; placeholders follow the wall
clock; every output stream's pts only ever increases.

`live.workers = N` (> 1) moves face detection into N worker processes
(`streamguard.live_worker`) fed over ZeroMQ PUSH/PULL; a collector takes their boxes back in
input order and tracks and protects each frame here, skipping (and counting) a frame whose
worker died; a supervisor thread restarts dead workers (`streamguard.live_pool`). A frame is
only ever emitted protected.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from streamguard.config import Config, StreamConfig
from streamguard.frames import Frame
from streamguard.io.sink import encodable_size, pad_to
from streamguard.pipeline import FrameProcessor

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)


def redact(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x (for every log line and report)."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def classify(exc: BaseException) -> str:
    """A user-facing reason for a failed connection."""
    text = str(exc)
    low = text.lower()
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


@dataclass
class StreamStats:
    audio_packets: int = 0
    worker_restarts: int = 0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    placeholders: int = 0
    failed_closed: int = 0
    faces: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)) if lat else (
            lambda q: None)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "dropped": self.dropped, "placeholders": self.placeholders,
                "failed_closed": self.failed_closed, "faces": self.faces,
                "reconnects": self.reconnects, "connected": int(self.connected),
                "audio_packets": self.audio_packets, "worker_restarts": self.worker_restarts,
                "fps_out": round(self.frames_out / elapsed, 2),
                "latency_p50_ms": pick(0.5), "latency_p99_ms": pick(0.99),
                "last_error": self.last_error}


class DropOldest:
    """A bounded queue that drops its oldest item when full (counted by the caller)."""

    def __init__(self, size: int):
        self._items: deque = deque()
        self._size = size
        self._cond = threading.Condition()

    def put(self, item: Any) -> bool:
        """Returns True when an old item had to be dropped."""
        with self._cond:
            dropped = len(self._items) >= self._size
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float) -> Any | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None


# -- outputs -----------------------------------------------------------------------------------

class ZmqOutput:
    """PUB socket: [header JSON, pixel buffer]. Header: stream, index, pts, time_base, shape,
    dtype, faces (xyxy lists), placeholder. See docs/zeromq.md for a consumer."""

    def __init__(self, endpoint: str, stream: str):
        import zmq

        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 30)  # a slow subscriber drops frames, never blocks us
        self._sock.bind(endpoint)
        self._stream = stream

    def write(self, frame: Frame, placeholder: bool) -> None:
        faces = [] if frame.faces is None else frame.faces.xyxy.round(1).tolist()
        header = {"stream": self._stream, "index": frame.index, "pts": frame.pts,
                  "time_base": [TIME_BASE.numerator, TIME_BASE.denominator],
                  "shape": list(frame.image.shape), "dtype": str(frame.image.dtype),
                  "faces": faces, "placeholder": placeholder}
        self._sock.send_multipart([json.dumps(header).encode(), frame.image], copy=False)

    def write_audio(self, packet: Any, pts: int) -> None:
        """ZeroMQ carries video frames only."""

    def close(self) -> None:
        self._sock.close(0)


class _Encoded:
    """An H.264 encoder writing into a PyAV container (RTSP publish or a segment file), plus
    the camera's audio stream copied packet for packet when the container takes it."""

    def __init__(self, target: str, fmt: str | None, width: int, height: int, options=None,
                 audio: Any = None):
        self.container = av.open(target, "w", format=fmt, options=options or {})
        self.stream = self.container.add_stream("libx264", rate=30)
        self.stream.width, self.stream.height = encodable_size("yuv420p", width, height)
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = TIME_BASE
        self.stream.time_base = TIME_BASE
        self.stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency",
                                             "crf": "23", "g": "30"}
        self.audio = None
        self._audio_last = -1
        if audio is not None:
            try:
                self.audio = self.container.add_stream_from_template(audio)
                self.audio.time_base = TIME_BASE
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("%s: cannot carry the camera's %s audio (%s); video only", target,
                            audio.codec_context.name, exc)

    def write(self, frame: Frame) -> None:
        image = pad_to(frame.image, self.stream.width, self.stream.height)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        vf.pts, vf.time_base = frame.pts, TIME_BASE
        self.container.mux(self.stream.encode(vf))

    def write_audio(self, packet: Any, pts: int) -> None:
        if self.audio is None:
            return
        pts = max(pts, self._audio_last + 1)
        self._audio_last = pts
        packet.stream = self.audio
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.duration = 0
        self.container.mux(packet)

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class RtspOutput:
    """Publishes to an RTSP server (ANNOUNCE/RECORD); reopens with backoff when it goes away."""

    def __init__(self, url: str, backoff: tuple[float, float], audio: Any = None):
        self.url = url
        self.audio = audio  # the camera's audio stream (a template), or None
        self._enc: _Encoded | None = None
        self._retry_at = 0.0
        self._delay, self._max = backoff[0], backoff[1]
        self._first = backoff[0]
        self.failures = 0

    def write(self, frame: Frame, placeholder: bool) -> None:
        now = time.monotonic()
        if self._enc is None:
            if now < self._retry_at:
                return
            try:
                h, w = frame.image.shape[:2]
                self._enc = _Encoded(self.url, "rtsp", w, h, {"rtsp_transport": "tcp"},
                                     audio=self.audio)
                self._delay = self._first
                log.info("publishing to %s", redact(self.url))
            except (av.error.FFmpegError, OSError) as exc:
                self._fail(exc)
                return
        try:
            self._enc.write(frame)
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(exc)

    def write_audio(self, packet: Any, pts: int) -> None:
        if self._enc is None:
            return  # not publishing right now: the audio waits for no one
        try:
            self._enc.write_audio(packet, pts)
        except (av.error.FFmpegError, OSError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        log.warning("RTSP output %s: %s; retrying in %.1f s", redact(self.url), classify(exc),
                    self._delay)
        if self._enc is not None:
            try:
                self._enc.container.close()
            except (av.error.FFmpegError, OSError):
                log.debug("closing a broken RTSP output failed too")
            self._enc = None
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self._max)

    def close(self) -> None:
        if self._enc is not None:
            try:
                self._enc.close()
            except (av.error.FFmpegError, OSError) as exc:
                log.debug("RTSP output close: %s", exc)
            self._enc = None


class SegmentRecorder:
    """Rolling mp4/mkv files of `segment_s` seconds, each finalized (playable) when it ends."""

    def __init__(self, folder: str, name: str, segment_s: float, audio: Any = None,
                 fmt: str = "mp4"):
        self.audio = audio
        self.ext, self._format = (".mkv", "matroska") if fmt == "mkv" else (".mp4", "mp4")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name, self.segment_s = name, segment_s
        self._enc: _Encoded | None = None
        self._start_pts = 0
        self._tmp: Path | None = None
        self.files: list[Path] = []

    def write(self, frame: Frame, placeholder: bool) -> None:
        if self._enc is not None and (frame.pts - self._start_pts) * TIME_BASE >= self.segment_s:
            self._finish()
        if self._enc is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            final = self.folder / f"{self.name}-{stamp}-{len(self.files):04d}{self.ext}"
            self._tmp = final.with_name(f".{final.name}.partial")
            h, w = frame.image.shape[:2]
            self._enc = _Encoded(str(self._tmp), self._format, w, h, audio=self.audio)
            self._start_pts = frame.pts
            self._final = final
        self._enc.write(frame)

    def write_audio(self, packet: Any, pts: int) -> None:
        if self._enc is not None and pts >= self._start_pts:
            self._enc.write_audio(packet, pts)

    def _finish(self) -> None:
        self._enc.close()
        self._tmp.rename(self._final)
        self.files.append(self._final)
        self._enc = None

    def close(self) -> None:
        if self._enc is not None:
            self._finish()


# -- one camera ----------------------------------------------------------------------------------

class _AudioTemplate:
    """The camera's audio stream parameters, kept alive after its connection closes (outputs
    reopened later still need them): a stream of an in-memory container that is never
    written."""

    def __init__(self, stream: Any):
        import io

        self._holder = av.open(io.BytesIO(), "w", format="nut")  # NUT takes any codec
        self.stream = self._holder.add_stream_from_template(stream)
        self.codec = stream.codec_context.name

    def close(self) -> None:
        self._holder.close()


class _RemoteDetection:
    """The detector slot of a stream whose detection runs in worker processes."""

    def detect(self, image: np.ndarray, index: int):
        raise RuntimeError("detection runs in the stream's worker processes")

    def close(self) -> None:
        """Nothing is held here."""


class LiveStream:
    def __init__(self, scfg: StreamConfig, cfg: Config, detector=None):
        self.scfg, self.cfg, self.live = scfg, cfg, cfg.live
        self.remote = self.live.workers > 1 and detector is None
        # live output cannot wait for late detections: no lookback. With worker processes,
        # detection runs there; tracking and protection stay here, in frame order.
        self.processor = FrameProcessor(cfg.model_copy(update={
            "track": cfg.track.model_copy(update={"lookback": 0})}),
            _RemoteDetection() if self.remote else detector)
        self.stats = StreamStats()
        self.queue = DropOldest(self.live.max_queue)
        self.stop_event = threading.Event()
        self.outputs: list[Any] = []
        if scfg.zmq:
            self.outputs.append(ZmqOutput(scfg.zmq, scfg.name))
        if scfg.publish:
            self.outputs.append(RtspOutput(scfg.publish, (self.live.reconnect_initial_s,
                                                          self.live.reconnect_max_s)))
        if scfg.record_dir:
            self.outputs.append(SegmentRecorder(scfg.record_dir, scfg.name, scfg.segment_s,
                                                fmt=scfg.record_format))
        self._audio: _AudioTemplate | None = None
        self._audio_q: deque[tuple[bytes, int, bool]] = deque(maxlen=512)
        self._audio_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read_loop, name=f"{scfg.name}-read",
                                          daemon=True)]
        if self.remote:
            from streamguard.live_pool import WorkerPool

            self.pool = WorkerPool(self, self.live.workers)
            self._threads += self.pool.threads()
        else:
            self._threads.append(threading.Thread(target=self._work_loop,
                                                  name=f"{scfg.name}-work", daemon=True))
        self._t0 = time.monotonic()
        self._offset: float | None = None  # output clock - input clock, this connection
        self._last_pts = -1
        self._last_out: np.ndarray | None = None
        self._index = 0
        self.error: BaseException | None = None

    def start(self) -> LiveStream:
        if self.remote:
            self.pool.start()
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)
        for out in self.outputs:
            try:
                out.close()
            except (av.error.FFmpegError, OSError) as exc:
                log.warning("%s: closing an output failed: %s", self.scfg.name, exc)
        if self.remote:
            self.pool.close()
        self.processor.close()
        if self._audio is not None:
            self._audio.close()

    # -- reader ----------------------------------------------------------------------------
    def _open(self):
        src = self.scfg.input
        options: dict[str, str] = {}
        fmt = None
        if src.startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": self.live.rtsp_transport,
                       "timeout": str(int(self.live.stall_timeout_s * 1e6))}
        elif src.startswith("/dev/video"):
            fmt = "v4l2"
        return av.open(src, format=fmt, options=options, timeout=self.live.stall_timeout_s)

    def _read_loop(self) -> None:
        delay = self.live.reconnect_initial_s
        paced = not self.scfg.input.startswith(("rtsp://", "rtsps://", "/dev/video"))
        while not self.stop_event.is_set():
            try:
                with self._open() as container:
                    self.stats.connected = True
                    delay = self.live.reconnect_initial_s
                    log.info("%s: connected to %s", self.scfg.name, redact(self.scfg.input))
                    self._read(container, paced)
                if paced and not self.scfg.loop:
                    break  # a file that ended
                if not paced:
                    raise EOFError("the stream ended")
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect, never hang
                if not isinstance(exc, (av.error.FFmpegError, OSError, EOFError)):
                    log.exception("%s: unexpected input failure", self.scfg.name)
                self.stats.connected = False
                self.stats.last_error = classify(exc)
                if self.stop_event.is_set():
                    break
                self.stats.reconnects += 1
                log.warning("%s: input %s: %s; reconnecting in %.1f s", self.scfg.name,
                            redact(self.scfg.input), self.stats.last_error, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.live.reconnect_max_s)
        self.stats.connected = False

    def _out_time(self, t_src: float | None) -> float:
        """This connection's input time on the output clock (seconds since the stream began)."""
        now = time.monotonic() - self._t0
        if t_src is None:
            return now
        if self._offset is None:
            self._offset = now - t_src
        return t_src + self._offset

    def _read(self, container, paced: bool) -> None:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        self._use_audio(audio)
        self._offset = None
        start_wall, start_t = time.monotonic(), None
        for packet in container.demux(*(s for s in (stream, audio) if s is not None)):
            if self.stop_event.is_set():
                return
            if packet.stream is not stream:
                if packet.pts is not None and self._audio is not None and packet.size:
                    out = self._out_time(float(packet.pts * packet.time_base))
                    with self._audio_lock:
                        self._audio_q.append((bytes(packet), int(out / TIME_BASE),
                                              packet.is_keyframe))
                continue
            for vf in stream.decode(packet):
                if paced and vf.time is not None:  # a file: keep real time
                    start_t = vf.time if start_t is None else start_t
                    wait = (vf.time - start_t) - (time.monotonic() - start_wall)
                    if wait > 0 and self.stop_event.wait(wait):
                        return
                frame = Frame(self.stats.frames_in, None, None, vf.to_ndarray(format="rgb24"),
                              meta={"t_in": time.monotonic(), "t_out": self._out_time(vf.time)})
                self.stats.frames_in += 1
                if self.queue.put(frame):
                    self.stats.dropped += 1

    def _use_audio(self, audio: Any) -> None:
        """Outputs carry the first connection's audio stream; later connections must match."""
        if audio is None:
            return
        if self._audio is None:
            try:
                self._audio = _AudioTemplate(audio)
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("%s: the camera's %s audio cannot be carried (%s); video only",
                            self.scfg.name, audio.codec_context.name, exc)
                return
            for out in self.outputs:
                if hasattr(out, "audio"):
                    out.audio = self._audio.stream
        elif audio.codec_context.name != self._audio.codec:
            log.warning("%s: the camera's audio changed codec (%s -> %s); not carried",
                        self.scfg.name, self._audio.codec, audio.codec_context.name)

    # -- worker ------------------------------------------------------------------------------
    def _next_pts(self, t_out: float | None = None) -> int:
        if t_out is None:
            t_out = time.monotonic() - self._t0
        pts = max(int(t_out / TIME_BASE), self._last_pts + 1)  # only ever increases
        self._last_pts = pts
        return pts

    def _work_loop(self) -> None:
        try:
            placeholder_every = 1.0 / self.live.placeholder_fps
            while not self.stop_event.is_set():
                frame = self.queue.get(timeout=placeholder_every)
                if frame is None:
                    self.idle()
                    continue
                analyzed = self.processor.analyze(frame)
                protected = self.processor.protect(analyzed)
                self.stats.failed_closed = self.processor.failed_closed
                if protected is None:  # fail-closed "drop" policy: nothing goes out
                    continue
                self.deliver(protected, frame.meta)
        except BaseException as exc:  # the stream stops; the supervisor sees the error
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.stats.last_error = f"worker failed: {type(exc).__name__}: {exc}"
        log.error("%s: %s", self.scfg.name, self.stats.last_error)
        self.stop_event.set()

    def idle(self) -> None:
        """While the camera is away, keep the outputs' clock with a placeholder frame."""
        if not self.stats.connected and self._last_out is not None:
            self._emit_placeholder()

    def deliver(self, protected: Frame, meta: dict[str, Any]) -> None:
        """Hand one protected frame to the outputs (with the audio that came before it)."""
        self.stats.faces += 0 if protected.faces is None else len(protected.faces)
        self._emit(protected, placeholder=False, t_out=meta.get("t_out"))
        self.stats.latencies_ms.append((time.monotonic() - meta["t_in"]) * 1000)

    def _emit_placeholder(self) -> None:
        image = (self._last_out if self.live.placeholder == "last"
                 else np.zeros_like(self._last_out))
        self.stats.placeholders += 1
        self._emit(Frame(-1, None, None, image), placeholder=True)

    def _emit(self, frame: Frame, placeholder: bool, t_out: float | None = None) -> None:
        frame = frame.replace(index=self._index, pts=self._next_pts(t_out), time_base=TIME_BASE)
        self._index += 1
        for out in self.outputs:
            out.write(frame, placeholder)
        self._flush_audio()
        self._last_out = frame.image
        self.stats.frames_out += 1

    def _flush_audio(self) -> None:
        with self._audio_lock:
            packets = list(self._audio_q)
            self._audio_q.clear()
        for data, pts, key in packets:
            for out in self.outputs:
                packet = av.Packet(data)  # a muxer consumes its packet: one copy per output
                packet.is_keyframe = key
                out.write_audio(packet, pts)
            self.stats.audio_packets += 1


# -- metrics -------------------------------------------------------------------------------------

def prometheus_text(streams: list[LiveStream]) -> str:
    lines = []
    gauges = ("frames_in", "frames_out", "dropped", "placeholders", "failed_closed", "faces",
              "reconnects", "connected", "fps_out", "latency_p50_ms", "latency_p99_ms",
              "audio_packets", "worker_restarts")
    for key in gauges:
        lines.append(f"# TYPE streamguard_{key} gauge")
        for s in streams:
            value = s.stats.snapshot()[key]
            if value is not None:
                lines.append(f'streamguard_{key}{{stream="{s.scfg.name}"}} {value}')
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Prometheus text format on host:port (loopback by default)."""

    def __init__(self, streams: list[LiveStream], host: str, port: int):
        streams_ref = streams

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = prometheus_text(streams_ref).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                log.debug("metrics: " + args[0], *args[1:])

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(cfg: Config, stop: threading.Event) -> list[dict]:
    """Run every configured stream until `stop` is set; one stream's failure never stops
    another. Returns each stream's final stats."""
    streams = [LiveStream(s, cfg).start() for s in cfg.streams]
    metrics = (MetricsServer(streams, cfg.live.bind_host, cfg.live.metrics_port)
               if cfg.live.metrics_port else None)
    try:
        while not stop.wait(0.5):
            for i, s in enumerate(streams):
                if s.error is not None:  # restart a crashed stream worker
                    log.error("%s: restarting after %s", s.scfg.name, s.stats.last_error)
                    s.stop()
                    streams[i] = LiveStream(s.scfg, cfg).start()
    finally:
        for s in streams:
            s.stop()
        if metrics is not None:
            metrics.close()
    return [{"stream": s.scfg.name, **s.stats.snapshot()} for s in streams]
