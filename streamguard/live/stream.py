"""One live stream: a camera in, only protected frames out; and `serve`, which runs them all.

A `LiveStream` is wiring of `streamguard.stages`:

    read --frames (drop_oldest)--> analyze --analyzed (block)--> output --> Outputs
           (camera, reconnects)    detect, track,                protect,    ZeroMQ, RTSP,
                                   look-back                     emit        recordings

- read: the input (`CameraSource.frames`) decodes into a drop-oldest channel: when processing
  falls behind, the oldest waiting frame is dropped and counted, which bounds the added
  latency; the input reconnects with backoff, forever. Frames get their pts here: the
  camera's own time plus one offset per connection (anchored on the wall clock when the
  connection starts), so the camera's audio, copied packet for packet into the RTSP and
  recorded outputs, keeps its sync with the video.
- analyze: detects (fail-closed like the offline pipeline) and tracks each frame, in order.
  With `live.workers = N` detection runs in a `WorkerPool` of processes instead: a dispatch
  stage submits frames to it (dropping, counted, when every worker is busy) and a collect
  stage takes their boxes back in order and tracks them here, so tracks see every frame.
- output: protects the frames the look-back releases and writes them to the outputs while
  the next frame is being detected: exactly one thread writes to the outputs, and only
  protected frames. Its channel is short and blocking: when protection and encoding fall
  behind, detection waits and the input channel drops (counted), never the output.

While the camera is away the outputs get placeholder frames (black or the last protected
frame) so they keep their clock. A failing output (an RTSP server that went away) is reopened
with backoff; frames meanwhile are not delivered there and never replaced by unprotected ones.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from streamguard.config import Config, StreamConfig
from streamguard.frames import Frame, Timing
from streamguard.io.colour import Colour
from streamguard.io.publish import LIVE_TIME_BASE
from streamguard.io.camera import Backoff, CameraSource, is_network_camera
from streamguard.io.timeline import JUMP_S, Timeline
from streamguard.live.outputs import Outputs
from streamguard.process import NOT_LOOKED, FrameProcessor, Lookback
from streamguard.report import StreamStats
from streamguard.stages import IDLE, Channel, Run, Stage

log = logging.getLogger(__name__)

OUTPUT_QUEUE = 2  # analyzed frames waiting for the output stage (bounds added latency)
PLACEHOLDER = object()  # handed to the output stage: a placeholder frame, if still away
POOL_POLL_MS = 20  # how long the collect stage waits on the workers per look


class LiveStream:
    """One camera (`StreamConfig`) through detection, tracking and protection to its outputs
    (ZeroMQ PUB, RTSP publish, rolling recordings). `start()`, then `stop()`; `stats` are its
    metrics; `error` is set when its processing failed (`serve` restarts it)."""

    def __init__(self, scfg: StreamConfig, cfg: Config, detector=None):
        self.scfg, self.cfg, self.live = scfg, cfg, cfg.live
        live = self.live
        pooled = live.workers > 1 and detector is None
        # With worker processes, detection runs there; tracking and protection stay here, in
        # frame order, and so does the (short) live look-back.
        self.processor = FrameProcessor(cfg, detector, detects=not pooled)
        # the frame budget: behind the camera, detect on fewer frames before dropping any
        self.schedule = self.processor.budget() if live.frame_budget and not pooled else None
        self._steps: deque[int] = deque(maxlen=31)  # recent source pts steps (frame interval)
        self._prev_pts: int | None = None
        self.lookback = Lookback(live.lookback, spare_bytes=cfg.pipeline.memory_mb * 2**20)
        self.stats = StreamStats()
        self.run = Run(on_error=self._failed)
        self.stop_event = self.run.stop
        self.frames = Channel(self.run, live.max_queue, overflow="drop_oldest",
                              on_drop=self._dropped)
        self.analyzed = Channel(self.run, OUTPUT_QUEUE)
        self.camera = CameraSource(scfg.input, live.stall_timeout_s,
                                   Backoff(live.reconnect_initial_s, live.reconnect_max_s),
                                   live.rtsp_transport, scfg.loop, scfg.name,
                                   live.probe_ms / 1000)
        self._t0 = time.monotonic()
        self.outputs = Outputs(scfg, cfg, self.stats, self._t0)
        self._timeline: Timeline | None = None  # this connection's clock (`_on_connect`)
        self._untimed: float | None = None  # the output time of a frame timed on arrival
        self._last_t: float | None = None  # the camera's time of its last frame, this connection
        self._networked = is_network_camera(scfg.input)  # frames can be lost on the way
        self._last_pts = -1  # the source's last pts
        idle_s = 1.0 / live.placeholder_fps
        name = scfg.name
        read = Stage("read", self.run, lambda frame: (frame,),
                     self.camera.frames(self.stop_event, self._on_connect, self._on_audio,
                                        self._ingest),
                     self.frames, thread_name=f"{name}-read",
                     closes_outbox=False)  # a file input that ended: the camera is away
        self.pool = None
        if pooled:
            from streamguard.live.pool import WorkerPool

            self.pool = WorkerPool(cfg, live.workers, name, live.reorder_timeout_ms / 1000)
            analyze = [Stage("dispatch", self.run, self._submit, self.frames,
                             thread_name=f"{name}-dispatch"),
                       Stage("collect", self.run, self._collected, self._pool_results(idle_s),
                             self.analyzed, thread_name=f"{name}-collect")]
        else:
            analyze = [Stage("analyze", self.run, self._analyze, self.frames, self.analyzed,
                             idle_s=idle_s, on_idle=self._idle, thread_name=f"{name}-work")]
        output = Stage("output", self.run, self._output, self.analyzed,
                       thread_name=f"{name}-output")
        self.stages = [read, *analyze, output]

    @property
    def error(self) -> BaseException | None:
        """Why the stream's processing failed, or None."""
        return self.run.errors[0] if self.run.errors else None

    def start(self) -> LiveStream:
        if self.pool is not None:
            self.pool.start()
        for stage in self.stages:
            stage.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        for stage in self.stages:
            stage.join(timeout)
        self.outputs.close()
        if self.pool is not None:
            self.pool.close()
        self.processor.close()

    def fail(self, exc: BaseException) -> None:
        self.run.fail(exc)

    def preview(self) -> np.ndarray | None:
        """The latest frame the outputs got (protected, or a placeholder); None before any."""
        return self.outputs.last_image

    def snapshot(self) -> dict[str, Any]:
        """The stream's metrics now (connection state read from the camera)."""
        stats = self.stats
        stats.connected = self.camera.connected
        stats.reconnects = self.camera.reconnects
        if self.error is None:
            stats.last_error = self.camera.last_error
        if self.pool is not None:
            stats.worker_restarts = self.pool.restarts
        if self.schedule is not None:
            stats.schedule = self.schedule.snapshot()
        stats.output_failures, stats.output_error = self.outputs.failures()
        return stats.snapshot()

    def _failed(self, exc: BaseException) -> None:
        self.stats.last_error = f"worker failed: {type(exc).__name__}: {exc}"
        log.error("%s: %s", self.scfg.name, self.stats.last_error)

    def _dropped(self, _frame: Any = None) -> None:
        self.stats.dropped += 1

    # -- read ------------------------------------------------------------------------------
    def _on_connect(self, audio: Any) -> None:
        # this connection's clock: the camera's time anchored on the live clock at its first
        # item, one offset more per jump of the camera's clock (a restart, a reset)
        self._timeline = Timeline(
            Fraction(self.camera.frame_interval).limit_denominator(100_000),
            clock=lambda: Fraction(time.monotonic() - self._t0))
        self._untimed = self._last_t = None
        self.outputs.use_audio(audio)

    def _ingest(self, vf: Any) -> Frame:
        """A decoded camera picture as a Frame: timed, its damage and colour read."""
        received = time.monotonic()
        # lost packets (UDP): the decoder conceals what it can and flags the frame; it and
        # the frames predicted from it are protected as protect.damaged says, and counted
        self.stats.frames_corrupt += bool(getattr(vf, "is_corrupt", False))
        self._note_lost_frames(vf)
        # camera time plus this connection's offset, on the live clock; strictly increasing
        pts = max(int(self._frame_time(vf) / LIVE_TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        # a camera that came back at another resolution: its outputs keep the first size
        frame = self.camera.decoder.frame(vf, self.stats.frames_in, pts, LIVE_TIME_BASE,
                                          colour=Colour.of(vf), timing=Timing(received))
        self.stats.frames_rescaled = self.camera.sizes.rescaled
        self.stats.frames_in += 1
        return frame

    def _note_lost_frames(self, vf: Any) -> None:
        """Whole frames lost on the way (every RTP packet of a frame, over UDP): the decoder
        shows no sign of it, yet the frames after it predict from what is missing, up to the
        next keyframe. A step in the camera's time of more than 1.5 frame intervals is such
        a loss: those frames are damaged (protected as protect.damaged says), and the frames
        missing are counted (`frames_lost`). A camera that skips frames itself is taken for
        one that lost them: its frames are protected whole up to the next keyframe. Only
        network cameras lose frames on the way: webcams and files (often VFR: a webcam in
        low light slows down) are left alone."""
        if not self._networked:
            return
        t = vf.time
        last, self._last_t = self._last_t, t
        if t is None or last is None or t <= last:  # untimed, or a jump back (a timeline's)
            return
        missing = round((t - last) / self.camera.frame_interval) - 1
        if missing >= 1 and t - last <= JUMP_S:
            self.camera.decoder.damage.lost()
            self.stats.frames_lost += missing

    def _on_audio(self, packet: Any) -> None:
        self.outputs.queue_audio(packet, self._out_time("audio", packet.pts * packet.time_base))

    def _frame_time(self, vf: Any) -> float:
        """A video frame's output time. RTSP's first frame has no time yet (before the
        stream's first clock sync) and is timed on arrival; the next one, decoded right after
        it, is kept a frame interval later (the connection's clock moves with it, audio too):
        it went out 2 ms after it, and recordings showed the first frame for 2 ms."""
        if vf.pts is None:
            self._untimed = time.monotonic() - self._t0
            return self._untimed
        t = self._out_time("video", vf.pts * vf.time_base)
        if self._untimed is not None:
            shift = self._untimed + self.camera.frame_interval - t
            if shift > 0:
                self._timeline.shift(Fraction(shift))
                t += shift
            self._untimed = None
        return t

    def _out_time(self, stream: str, t_src: Fraction) -> float:
        """This connection's input time (seconds) on the output clock (seconds since the
        stream began); a jump of the camera's clock is counted and never goes back."""
        before = self._timeline.discontinuities
        out = float(self._timeline.time(stream, Fraction(t_src)))
        if self._timeline.discontinuities > before:
            self.stats.pts_discontinuities += 1
            log.warning("%s: the camera's clock jumped; its time goes on from here",
                        self.scfg.name)
        return out

    # -- analyze ----------------------------------------------------------------------------
    def _analyze(self, frame: Frame) -> Iterator[Frame]:
        start = time.perf_counter()
        found, failure = self.processor.detect(frame)
        released = self._track(frame, found, failure)
        if self.schedule is not None:
            self.schedule.done(found is not NOT_LOOKED, time.perf_counter() - start,
                               self._interval(frame), backlog=len(self.frames))
        return released

    def _interval(self, frame: Frame) -> float | None:
        """The camera's frame interval, seconds: the median of its recent pts steps (a frame
        dropped on the way is one long step among many)."""
        if self._prev_pts is not None:
            self._steps.append(frame.pts - self._prev_pts)
        self._prev_pts = frame.pts
        if len(self._steps) < 5:
            return None
        return float(np.median(self._steps) * LIVE_TIME_BASE)

    def _submit(self, frame: Frame) -> tuple:
        if self.processor.whole_for_damage(frame):
            self.pool.pass_on(frame)  # protected whole anyway: no worker's time spent on it
            return ()
        # the tracks' hints are a frame or two old here: windows leave room for that
        if not self.pool.submit(frame, self.processor.expected()):
            self._dropped()  # every worker busy: drop, never wait
        return ()

    def _pool_results(self, idle_s: float) -> Iterator[Any]:
        """The workers' results in frame order, and IDLE when none came for `idle_s`."""
        last = time.monotonic()
        while not self.stop_event.is_set():
            if self.pool.error is not None:
                raise self.pool.error
            results = self.pool.results(wait_ms=POOL_POLL_MS)
            if results:
                last = time.monotonic()
                yield from results
            elif time.monotonic() - last > idle_s:
                last = time.monotonic()
                yield IDLE

    def _collected(self, result: Any) -> Iterable[Any]:
        if result is IDLE:
            return self._idle()
        if result.lost:  # no detection will come: never emitted
            self._dropped()
            return ()
        return self._track(result.frame, result.found, result.failure)

    def _track(self, frame: Frame, found: Any, failure: str | None) -> Iterator[Frame]:
        """Track one frame in input order; the frames the look-back releases go on."""
        analyzed = self.processor.apply(frame, found, failure)
        analyzed.timing.analyzed = time.monotonic()
        # the start's longer hold drains a frame at a time, while the output has room: a
        # burst would stall this stage behind it and drop the camera's frames
        room = OUTPUT_QUEUE - len(self.analyzed)
        return self._released(list(self.lookback.push(analyzed, 1 if room >= 2 else 0)))

    @staticmethod
    def _released(frames: Iterable[Frame]) -> Iterator[Frame]:
        """The frames as they are handed on, each stamped then: a frame that waits for the
        output stage behind others the look-back let go with it (at a flush) counts that
        wait as held, not as processing."""
        for frame in frames:
            frame.timing.released = time.monotonic()
            yield frame

    def _idle(self) -> Iterable[Any]:
        """No frame came for a while. While the camera is still connected (a network hiccup,
        a decoder waiting for a keyframe) the look-back keeps what it holds: a face found on
        the next frames must still be covered on these. Once the camera is away, release them
        and then a placeholder (one channel keeps them in order)."""
        if self.camera.connected:
            return ()
        return itertools.chain(self._released(self.lookback.flush()), (PLACEHOLDER,))

    # -- output -----------------------------------------------------------------------------
    def _output(self, item: Frame | object) -> tuple:
        """Protect and deliver a frame, or a placeholder, in the order they were handed over."""
        if item is PLACEHOLDER:
            if not self.camera.connected:  # still away
                self.outputs.placeholder()
            return ()
        protected = self.processor.protect(item)
        self.stats.count(item, protected)
        if protected is None:  # fail-closed "drop" policy: nothing goes out
            return ()
        self.outputs.emit(protected)
        timing = item.timing
        self.stats.observe_latency((time.monotonic() - timing.received) * 1000,
                                   timing.held_s * 1000)
        return ()


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
