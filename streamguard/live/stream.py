"""One live stream: a camera in, only protected frames out; and `serve`, which runs them all.

Threads of a `LiveStream`:
- the reader (`CameraSource.run`) decodes the input into a drop-oldest queue: when processing
  falls behind, the oldest waiting frame is dropped and counted, which bounds the added
  latency; the input reconnects with backoff, forever;
- with one worker, the worker thread detects and tracks each frame (fail-closed like the
  offline pipeline); with `live.workers = N` a dispatcher submits frames to a `WorkerPool` of
  detection processes and a collector takes their boxes back in order and tracks them here, so
  tracks see every frame;
- the output thread protects the frames the look-back releases and writes them to the
  outputs (encoding them, for RTSP and recordings) while the next frame is being detected:
  exactly one thread writes to the outputs, and only protected frames. Its queue is short
  and blocking: when protection and encoding fall behind, detection waits and the input
  queue drops (counted), never the output.

While the camera is away the outputs get placeholder frames (black or the last protected
frame) so they keep their clock. A failing output (an RTSP server that went away) is reopened
with backoff; frames meanwhile are not delivered there and never replaced by unprotected ones.

Timing: output pts = the input's own timestamp plus one offset per connection (anchored on the
wall clock when the connection starts), so the camera's audio, copied packet for packet into
the RTSP and recorded outputs, keeps its sync with the video; placeholders follow the wall
clock; every output stream's pts only ever increases (90 kHz).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any

import av
import av.error
import numpy as np

from streamguard.config import Config, StreamConfig
from streamguard.frames import Faces, Frame, Timing
from streamguard.io.bus import ZmqPublisher
from streamguard.io.colour import Colour
from streamguard.io.sink import LIVE_TIME_BASE, AudioTemplate, RtspPublisher, SegmentRecorder
from streamguard.io.source import Backoff, CameraSource, Damage, SizeKeeper
from streamguard.process import FrameProcessor, Lookback
from streamguard.report import StreamStats

log = logging.getLogger(__name__)

OUTPUT_QUEUE = 2  # analyzed frames waiting for the output thread (bounds added latency)
PLACEHOLDER = object()  # handed to the output thread: a placeholder frame, if still away


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


class _RemoteDetection:
    """The detector slot of a stream whose detection runs in worker processes."""

    def detect(self, image: np.ndarray, index: int, around: np.ndarray | None = None):
        raise RuntimeError("detection runs in the stream's worker processes")

    def close(self) -> None:
        """Nothing is held here."""


class LiveStream:
    """One camera (`StreamConfig`) through detection, tracking and protection to its outputs
    (ZeroMQ PUB, RTSP publish, rolling recordings). `start()`, then `stop()`; `stats` are its
    metrics; `error` is set when its processing failed (`serve` restarts it)."""

    def __init__(self, scfg: StreamConfig, cfg: Config, detector=None):
        self.scfg, self.cfg, self.live = scfg, cfg, cfg.live
        live = self.live
        remote = live.workers > 1 and detector is None
        # With worker processes, detection runs there; tracking and protection stay here, in
        # frame order, and so does the (short) live look-back.
        self.processor = FrameProcessor(cfg, _RemoteDetection() if remote else detector)
        self.lookback = Lookback(live.lookback)
        self.stats = StreamStats()
        self.queue = DropOldest(live.max_queue)
        self.stop_event = threading.Event()
        self.camera = CameraSource(scfg.input, live.stall_timeout_s,
                                   Backoff(live.reconnect_initial_s, live.reconnect_max_s),
                                   live.rtsp_transport, scfg.loop, scfg.name,
                                   live.probe_ms / 1000)
        self.outputs: list[Any] = []
        if scfg.zmq:
            self.outputs.append(ZmqPublisher(scfg.zmq, scfg.name, LIVE_TIME_BASE))
        if scfg.publish:
            self.outputs.append(RtspPublisher(
                scfg.publish, Backoff(live.reconnect_initial_s, live.reconnect_max_s)))
        if scfg.record_dir:
            self.outputs.append(SegmentRecorder(scfg.record_dir, scfg.name, scfg.segment_s,
                                                fmt=scfg.record_format))
        self._audio: AudioTemplate | None = None
        self._audio_q: deque[tuple[bytes, int, bool]] = deque(maxlen=512)
        self._audio_lock = threading.Lock()
        name = scfg.name
        # frames analyzed and released by the look-back, waiting for protection and output
        self._out_q: queue.Queue[Frame | object] = queue.Queue(maxsize=OUTPUT_QUEUE)
        self._threads = [threading.Thread(target=self._read_loop, name=f"{name}-read",
                                          daemon=True),
                         threading.Thread(target=self._guard(self._output_loop),
                                          name=f"{name}-output", daemon=True)]
        self.pool = None
        if remote:
            from streamguard.live.pool import WorkerPool

            self.pool = WorkerPool(cfg, live.workers, name, live.reorder_timeout_ms / 1000)
            self._threads += [
                threading.Thread(target=self._guard(self._dispatch_loop),
                                 name=f"{name}-dispatch", daemon=True),
                threading.Thread(target=self._guard(self._collect_loop),
                                 name=f"{name}-collect", daemon=True)]
        else:
            self._threads.append(threading.Thread(target=self._guard(self._work_loop),
                                                  name=f"{name}-work", daemon=True))
        self._t0 = time.monotonic()
        self._offset: float | None = None  # output clock - input clock, this connection
        self._last_pts = -1  # the outputs' last pts
        self._last_in_pts = -1  # the source's last pts
        self._last_out: np.ndarray | None = None
        self._index = 0
        self._keep_size = SizeKeeper(scfg.name)  # the outputs' frame size: the first's
        self._damage = Damage(start_damaged=True)  # per connection (`_on_connect`)
        self.error: BaseException | None = None

    def start(self) -> LiveStream:
        if self.pool is not None:
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
        if self.pool is not None:
            self.pool.close()
        self.processor.close()
        if self._audio is not None:
            self._audio.close()

    def preview(self) -> np.ndarray | None:
        """The latest frame the outputs got (protected, or a placeholder); None before any."""
        return self._last_out

    def snapshot(self) -> dict[str, Any]:
        """The stream's metrics now (connection state read from the camera)."""
        stats = self.stats
        stats.connected = self.camera.connected
        stats.reconnects = self.camera.reconnects
        if self.error is None:
            stats.last_error = self.camera.last_error
        if self.pool is not None:
            stats.worker_restarts = self.pool.restarts
        return stats.snapshot()

    # -- reader ----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        self.camera.run(self.stop_event, self._on_connect, self._on_video, self._on_audio)

    def _on_connect(self, audio: Any) -> None:
        self._offset = None
        # a new decoder: what it outputs before an intact keyframe lacks its references
        self._damage = Damage(start_damaged=True)
        self._use_audio(audio)

    def _on_video(self, vf: Any) -> None:
        # lost packets (UDP): the decoder conceals what it can and flags the frame; it and
        # the frames predicted from it are protected as protect.damaged says, and counted
        self.stats.frames_corrupt += bool(getattr(vf, "is_corrupt", False))
        damaged = self._damage(vf)
        self.stats.frames_damaged += damaged
        # a camera that came back at another resolution: its outputs keep the first one
        vf = self._keep_size(vf)
        self.stats.frames_rescaled = self._keep_size.rescaled
        received = time.monotonic()
        # camera time plus this connection's offset, on the live clock; strictly increasing
        pts = max(int(self._out_time(vf.time) / LIVE_TIME_BASE), self._last_in_pts + 1)
        self._last_in_pts = pts
        frame = Frame(self.stats.frames_in, pts, LIVE_TIME_BASE, vf.to_ndarray(format="rgb24"),
                      damaged=damaged, colour=Colour.of(vf), timing=Timing(received))
        self.stats.frames_in += 1
        if self.queue.put(frame):
            self.stats.dropped += 1

    def _on_audio(self, packet: Any) -> None:
        if self._audio is None:
            return
        out = self._out_time(float(packet.pts * packet.time_base))
        with self._audio_lock:
            self._audio_q.append((bytes(packet), int(out / LIVE_TIME_BASE), packet.is_keyframe))

    def _out_time(self, t_src: float | None) -> float:
        """This connection's input time on the output clock (seconds since the stream began)."""
        now = time.monotonic() - self._t0
        if t_src is None:
            return now
        if self._offset is None:
            self._offset = now - t_src
        return t_src + self._offset

    def _use_audio(self, audio: Any) -> None:
        """Outputs carry the first connection's audio stream; later connections must match."""
        if audio is None:
            return
        if self._audio is None:
            try:
                self._audio = AudioTemplate(audio)
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

    # -- processing -------------------------------------------------------------------------
    def _guard(self, loop):
        def run() -> None:
            try:
                loop()
            except BaseException as exc:  # the stream stops; `serve` restarts it
                self.fail(exc)
        return run

    def _work_loop(self) -> None:
        placeholder_every = 1.0 / self.live.placeholder_fps
        while not self.stop_event.is_set():
            frame = self.queue.get(timeout=placeholder_every)
            if frame is None:
                self._idle()
                continue
            found, failure = self.processor.detect(frame)
            self._finish(frame, found, failure)

    def _dispatch_loop(self) -> None:
        while not self.stop_event.is_set():
            frame = self.queue.get(timeout=0.1)
            # the tracks' hints are a frame or two old here: windows leave room for that
            if frame is not None and not self.pool.submit(frame, self.processor.expected()):
                self.stats.dropped += 1  # every worker busy: drop, never wait

    def _collect_loop(self) -> None:
        idle_every = 1.0 / self.live.placeholder_fps
        last_out = time.monotonic()
        while not self.stop_event.is_set():
            if self.pool.error is not None:
                raise self.pool.error
            for result in self.pool.results(wait_ms=20):
                if result.lost:  # no detection will come: never emitted
                    self.stats.dropped += 1
                else:
                    self._finish(result.frame, result.found, result.failure)
                last_out = time.monotonic()
            if time.monotonic() - last_out > idle_every:
                self._idle()
                last_out = time.monotonic()

    def _finish(self, frame: Frame, found: Faces | None, failure: str | None) -> None:
        """Track one frame in input order; hand the frames the look-back releases to the
        output thread."""
        analyzed = self.processor.apply(frame, found, failure)
        analyzed.timing.analyzed = time.monotonic()
        for ready in self.lookback.push(analyzed):
            self._hand_over(ready)

    def _hand_over(self, item: Frame | object) -> None:
        """Queue an analyzed frame (or PLACEHOLDER) for the output thread, waiting while it is
        full (the input queue drops meanwhile); on stop it is discarded, never emitted."""
        if isinstance(item, Frame):
            item.timing.released = time.monotonic()
        while not self.stop_event.is_set():
            try:
                self._out_q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _output_loop(self) -> None:
        """Protect and deliver frames, and placeholders, in the order they were handed over."""
        while not self.stop_event.is_set():
            try:
                item = self._out_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is PLACEHOLDER:
                self._placeholder()
            else:
                self._deliver(item)

    def _deliver(self, frame: Frame) -> None:
        protected = self.processor.protect(frame)
        self.stats.failed_closed = self.processor.failed_closed
        if protected is None:  # fail-closed "drop" policy: nothing goes out
            return
        self.stats.faces += 0 if protected.faces is None else len(protected.faces)
        self._emit(protected, placeholder=False)
        timing = frame.timing
        self.stats.observe_latency((time.monotonic() - timing.received) * 1000,
                                   timing.held_s * 1000)

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.stats.last_error = f"worker failed: {type(exc).__name__}: {exc}"
        log.error("%s: %s", self.scfg.name, self.stats.last_error)
        self.stop_event.set()

    def _idle(self) -> None:
        """No frame came for a while. While the camera is still connected (a network hiccup,
        a decoder waiting for a keyframe) the look-back keeps what it holds: a face found on
        the next frames must still be covered on these. Once the camera is away, release them
        and then a placeholder (one queue keeps them in order)."""
        if self.camera.connected:
            return
        for ready in self.lookback.flush():
            self._hand_over(ready)
        self._hand_over(PLACEHOLDER)

    def _placeholder(self) -> None:
        """Nothing to output for a while: while the camera is away, keep the outputs' clock
        with a placeholder frame."""
        if self.camera.connected or self._last_out is None:
            return
        image = (self._last_out if self.live.placeholder == "last"
                 else np.zeros_like(self._last_out))
        self.stats.placeholders += 1
        self.stats.placeholder_s += 1.0 / self.live.placeholder_fps
        # placeholders follow the wall clock
        pts = int((time.monotonic() - self._t0) / LIVE_TIME_BASE)
        self._emit(Frame(-1, pts, LIVE_TIME_BASE, image), placeholder=True)

    def _emit(self, frame: Frame, placeholder: bool) -> None:
        # frames and placeholders interleave: the outputs' pts only ever increase
        pts = max(frame.pts, self._last_pts + 1)
        self._last_pts = pts
        frame = frame.replace(index=self._index, pts=pts)
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


def serve(cfg: Config, stop: threading.Event) -> list[dict]:
    """Run every configured stream until `stop` is set; one stream's failure never stops
    another. Returns each stream's final stats."""
    from streamguard.live.http import StatusServer

    streams: list[LiveStream] = []
    # the endpoint first: a port in use is refused before any camera is opened
    http = (StatusServer(lambda: list(streams), cfg.live.bind_host, cfg.live.port,
                         cfg.live.http_token) if cfg.live.port else None)
    if http is not None:
        log.info("status page on http://%s:%d/", cfg.live.bind_host, http.port)
    streams += [LiveStream(s, cfg).start() for s in cfg.streams]
    try:
        while not stop.wait(0.5):
            for i, s in enumerate(streams):
                if s.error is not None:  # restart a crashed stream
                    log.error("%s: restarting after %s", s.scfg.name, s.stats.last_error)
                    s.stop()
                    streams[i] = LiveStream(s.scfg, cfg).start()
    finally:
        for s in streams:
            s.stop()
        if http is not None:
            http.close()
    return [{"stream": s.scfg.name, **s.snapshot()} for s in streams]
