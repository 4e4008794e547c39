"""decode -> detect/track -> protect -> encode, as threads joined by bounded queues.

Every queue operation has a timeout and watches one shared stop event; a stage that raises
stops the run and its exception reaches the caller (the output is then deleted, never left
looking complete); a stage that stops making progress for `stall_timeout_s` aborts the run.
Each stage is one thread working in order, so output order is input order.

Fail closed: when detection raises or overruns `detect.timeout_ms` on a frame, that frame is
protected whole (or dropped, by policy) and counted. No path emits a frame whose faces were
not protected: the protect stage either protects or raises.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamguard.config import Config
from streamguard.detect.base import Detector, create_detector
from streamguard.errors import OutputError, PipelineError, StreamguardError
from streamguard.frames import Faces, Frame, Passthrough
from streamguard.io.sink import VideoSink
from streamguard.io.source import VideoSource
from streamguard.protect.modes import build_protector, protect_whole_frame
from streamguard.report import RunReport
from streamguard.track import Tracker

log = logging.getLogger(__name__)

_END = object()


class _Stopped(Exception):
    """Raised inside a stage when the shared stop event is set."""


@dataclass
class _Run:
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: dict[str, float] = field(default_factory=dict)  # stage -> last progress time

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)
        self.stop.set()

    def tick(self, stage: str) -> None:
        self.progress[stage] = time.monotonic()


class Channel:
    """A bounded queue whose every put/get times out in slices and watches the stop event."""

    def __init__(self, run: _Run, size: int, poll_s: float):
        self._q: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._run = run
        self._poll = poll_s

    def put(self, item: Any) -> None:
        while True:
            if self._run.stop.is_set():
                raise _Stopped
            try:
                self._q.put(item, timeout=self._poll)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            if self._run.stop.is_set():
                raise _Stopped
            try:
                item = self._q.get(timeout=self._poll)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item


class Stage(threading.Thread):
    """Runs `work(inbox, emit)` in a thread; always ends its output, hands errors to the run."""

    def __init__(self, name: str, run: _Run, work: Callable[..., None],
                 inbox: Channel | None, outbox: Channel | None):
        super().__init__(name=f"streamguard-{name}", daemon=True)
        self.stage = name
        self._run = run
        self._work = work
        self._inbox = inbox
        self._outbox = outbox
        self.busy_s = 0.0

    def emit(self, item: Any) -> None:
        if self._outbox is not None:
            self._outbox.put(item)

    def run(self) -> None:
        self._run.tick(self.stage)
        try:
            self._work(self._inbox, self)
            if self._outbox is not None:
                self._outbox.put(_END)
        except _Stopped:
            return  # another stage failed or the run was stopped: its error is already recorded
        except BaseException as exc:  # handed to the caller, never swallowed
            self._run.fail(exc)


class FrameProcessor:
    """Detect, track and protect one frame at a time: shared by the pipeline and the library.

    `analyze(frame)` returns the frame with faces (or marked failed closed);
    `protect(frame)` returns the frame with protected pixels, or None when policy drops it.
    """

    def __init__(self, cfg: Config, detector: Detector | None = None):
        self.cfg = cfg
        self.protector = build_protector(cfg.protect)  # refuses early, before any decoding
        self.detector = detector if detector is not None else create_detector(cfg.detect)
        self._owns_detector = detector is None
        self.tracker = Tracker(cfg.track)
        self.failed_closed = 0
        self.detect_errors = 0
        self._timeout_s = cfg.detect.timeout_ms / 1000

    def reset_tracking(self) -> None:
        """Forget every track (a new file or segment); the models stay loaded."""
        self.tracker = Tracker(self.cfg.track)

    def close(self) -> None:
        if self._owns_detector:
            self.detector.close()

    def analyze(self, frame: Frame) -> Frame:
        """Detect (failing closed on an error or overrun), then track."""
        found, failure = detect_timed(self.detector, frame, self._timeout_s)
        return self.apply(frame, found, failure)

    def apply(self, frame: Frame, found: Faces | None, failure: str | None = None) -> Frame:
        """Track detections made here or elsewhere (a live worker process); `found` None means
        detection failed (`failure` says how): the frame fails closed and is counted."""
        if found is None:
            self.failed_closed += 1
            error = failure is not None and not failure.startswith("timeout")
            self.detect_errors += error
            if self.failed_closed <= 3 or not error:
                log.warning("frame %d: %s; protecting the whole frame", frame.index, failure)
            meta = {**frame.meta, "detect_error": True} if error else frame.meta
            return frame.replace(failed_closed=True, meta=meta)
        return frame.replace(faces=self.tracker.update(found, frame.image.shape))

    def protect(self, frame: Frame) -> Frame | None:
        if frame.failed_closed:
            if self.cfg.protect.fail_closed == "drop":
                return None
            return frame.replace(image=protect_whole_frame(frame.image, self.cfg.protect))
        if frame.faces is None:
            raise PipelineError(f"frame {frame.index} reached protection without detection")
        if len(frame.faces) == 0:
            return frame
        return frame.replace(image=self.protector(frame.image, frame.faces))


def detect_timed(detector: Detector, frame: Frame,
                 timeout_s: float) -> tuple[Faces | None, str | None]:
    """(faces, None), or (None, why) when the detector raised or overran `timeout_s` (late
    results are discarded: the frame fails closed)."""
    start = time.perf_counter()
    try:
        found = detector.detect(frame.image, frame.index)
    except Exception as exc:  # noqa: BLE001 - any detector failure fails this frame closed
        return None, f"detection failed ({type(exc).__name__}: {exc})"
    took = time.perf_counter() - start
    if took > timeout_s:
        return None, f"timeout: detection took {took * 1000:.0f} ms (over {timeout_s * 1000:.0f})"
    return found, None


class Lookback:
    """Delays frames by `depth` so a track's first box also covers the frames just before it.

    Pass-through packets wait in the same queue, keeping demux order.
    """

    def __init__(self, depth: int):
        self.depth = depth
        self._items: deque[Frame | Passthrough] = deque()
        self._frames = 0
        self._seen: set[int] = set()

    def push(self, item: Frame | Passthrough) -> Iterable[Frame | Passthrough]:
        if isinstance(item, Frame):
            faces = item.faces
            if faces is not None and len(faces):
                new = np.array([t not in self._seen for t in faces.track_id], bool)
                if new.any() and self.depth:
                    self._backfill(faces[new])
                self._seen.update(int(t) for t in faces.track_id)
            self._frames += 1
        self._items.append(item)
        while self._frames > self.depth:
            out = self._items.popleft()
            if isinstance(out, Frame):
                self._frames -= 1
            yield out

    def _backfill(self, faces: Faces) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, Frame) and item.faces is not None:
                self._items[i] = item.replace(faces=Faces.concat([item.faces, faces]))

    def flush(self) -> Iterable[Frame | Passthrough]:
        while self._items:
            yield self._items.popleft()
        self._frames = 0


def anonymize_file(
    src: str | Path,
    dst: str | Path,
    cfg: Config,
    *,
    detector: Detector | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Anonymize one video file into `dst`. Raises a StreamguardError; never leaves a partial
    output at `dst`."""
    src, dst = Path(src), Path(dst)
    report = RunReport(input=str(src), output=str(dst), mode=cfg.protect.mode)
    t0 = time.perf_counter()
    with VideoSource(src, cfg.pipeline.decode_threads) as source:
        info = source.info
        if src.resolve() == dst.resolve():
            raise OutputError(f"{dst}: output would overwrite the input")
        processor = FrameProcessor(cfg, detector)
        try:
            with VideoSink(dst, info, cfg.encode) as sink:
                _run_stages(source, sink, processor, cfg, report, info.expected_frames,
                            on_progress)
                sink.finish()
        finally:
            processor.close()
    report.wall_s = time.perf_counter() - t0
    report.tracks = processor.tracker.tracks_started
    report.failed_closed = processor.failed_closed
    report.detect_errors = processor.detect_errors
    report.resolution = f"{info.width}x{info.height}"
    report.dropped_streams = list(sink.dropped_streams)
    report.packets_copied = sink.packets_copied
    return report


def _run_stages(source: VideoSource, sink: VideoSink, processor: FrameProcessor, cfg: Config,
                report: RunReport, total: int,
                on_progress: Callable[[int, int], None] | None) -> None:
    run = _Run()
    pc = cfg.pipeline
    decoded, analyzed, protected = (Channel(run, pc.queue_size, pc.poll_s) for _ in range(3))
    lookback = Lookback(cfg.track.lookback)

    def decode(_: None, stage: Stage) -> None:
        items = iter(source.items())
        while True:
            t = time.perf_counter()
            item = next(items, _END)
            stage.busy_s += time.perf_counter() - t
            if item is _END:
                return
            stage.emit(item)
            run.tick(stage.stage)

    def detect(inbox: Channel, stage: Stage) -> None:
        for item in inbox:
            t = time.perf_counter()
            if isinstance(item, Frame):
                item = processor.analyze(item)
            ready = list(lookback.push(item))
            stage.busy_s += time.perf_counter() - t
            for out in ready:
                stage.emit(out)
            run.tick(stage.stage)
        for out in lookback.flush():
            stage.emit(out)

    def protect(inbox: Channel, stage: Stage) -> None:
        for item in inbox:
            t = time.perf_counter()
            if isinstance(item, Frame):
                faces = item.faces
                item = processor.protect(item)
                report.count_frame(faces, dropped=item is None)
            stage.busy_s += time.perf_counter() - t
            if item is not None:
                stage.emit(item)
            run.tick(stage.stage)

    def encode(inbox: Channel, stage: Stage) -> None:
        for item in inbox:
            t = time.perf_counter()
            if isinstance(item, Frame):
                sink.write(item)
            else:
                sink.passthrough(item)
            stage.busy_s += time.perf_counter() - t
            run.tick(stage.stage)

    stages = [
        Stage("decode", run, decode, None, decoded),
        Stage("detect", run, detect, decoded, analyzed),
        Stage("protect", run, protect, analyzed, protected),
        Stage("encode", run, encode, protected, None),
    ]
    for stage in stages:
        stage.start()
    try:
        _supervise(run, stages, pc.stall_timeout_s, sink, total, on_progress)
    except KeyboardInterrupt:
        run.stop.set()
        for stage in stages:
            stage.join(timeout=5)
        raise
    for stage in stages:
        report.stage_busy_s[stage.stage] = round(stage.busy_s, 3)
    if run.errors:
        exc = run.errors[0]
        if isinstance(exc, StreamguardError):
            raise exc
        raise PipelineError(f"pipeline stage failed: {type(exc).__name__}: {exc}") from exc


def _supervise(run: _Run, stages: list[Stage], stall_s: float, sink: VideoSink, total: int,
               on_progress: Callable[[int, int], None] | None) -> None:
    """Wait for the stages, report progress, abort a stalled run.

    Once the run is stopping, a stage stuck inside native code (a hung decoder or model) is
    given a grace period and then abandoned (its thread is a daemon), so the caller never hangs.
    """
    grace_until: float | None = None
    while True:
        alive = [s for s in stages if s.is_alive()]
        if not alive:
            break
        alive[0].join(timeout=0.2)
        if on_progress is not None:
            on_progress(sink.frames_written, total)
        now = time.monotonic()
        if run.stop.is_set():
            grace_until = grace_until or now + 5.0
            if now > grace_until:
                log.error("abandoning stuck stage(s): %s", ", ".join(s.stage for s in alive))
                break
        elif all(now - run.progress.get(s.stage, now) > stall_s for s in alive):
            run.fail(PipelineError(
                f"pipeline stalled: no progress in {', '.join(s.stage for s in alive)} for "
                f"{stall_s:.0f} s"))
    if on_progress is not None:
        on_progress(sink.frames_written, total)
