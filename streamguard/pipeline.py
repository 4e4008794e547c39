"""The file runner: decode -> detect/track -> protect -> encode, as `streamguard.stages`
joined by blocking channels (the per-frame work itself is `streamguard.process`).

A stage that raises stops the run and its exception reaches the caller (the output is then
deleted, never left looking complete); a stage that stops making progress for
`stall_timeout_s` aborts the run.

Fail closed: when detection raises or overruns `detect.timeout_ms` on a frame, that frame is
protected whole (or dropped, by policy) and counted. No path emits a frame whose faces were
not protected: the protect stage either protects or raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from streamguard.config import Config, PipelineConfig
from streamguard.detect.base import Detector
from streamguard.errors import OutputError, PipelineError, StreamguardError
from streamguard.frames import Frame, Passthrough
from streamguard.io.sink import VideoSink
from streamguard.io.source import VideoSource
from streamguard.process import NOT_LOOKED, FrameProcessor, Lookback, OverlappedDetection
from streamguard.report import RunReport
from streamguard.stages import Channel, Run, Stage

log = logging.getLogger(__name__)


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
    with VideoSource(src, cfg.pipeline.decode_threads,
                     skip_corrupt=cfg.pipeline.on_corrupt == "skip",
                     planar=cfg.pipeline.planar) as source:
        info = source.info
        if src.resolve() == dst.resolve():
            raise OutputError(f"{dst}: output would overwrite the input")
        # the output is checked and locked before any model loads
        with VideoSink(dst, info, cfg.encode) as sink:
            processor = FrameProcessor(cfg, detector)
            try:
                _run_stages(source, sink, processor, cfg, report, info.expected_frames,
                            on_progress)
                sink.finish()
            finally:
                processor.close()
    report.wall_s = time.perf_counter() - t0
    report.tracks = processor.tracker.tracks_started
    report.resolution = f"{info.width}x{info.height}"
    report.dropped_streams = list(sink.dropped_streams)
    report.packets_copied = sink.packets_copied
    report.frames_rescaled = source.frames_rescaled
    report.packets_skipped = source.packets_skipped
    report.pts_discontinuities = source.timeline.discontinuities if source.timeline else 0
    return report


def queue_frames(pc: PipelineConfig, width: int, height: int) -> int:
    """Frames each of the three queues may hold: `queue_size`, fewer when they would not fit
    `memory_mb` (8K frames), at least 1."""
    frame_bytes = max(width * height * 3, 1)
    return max(1, min(pc.queue_size, pc.memory_mb * 2**20 // (3 * frame_bytes)))


def _run_stages(source: VideoSource, sink: VideoSink, processor: FrameProcessor, cfg: Config,
                report: RunReport, total: int,
                on_progress: Callable[[int, int], None] | None) -> None:
    run = Run()
    pc = cfg.pipeline
    size = queue_frames(pc, source.info.width, source.info.height)
    decoded, analyzed, protected = (Channel(run, size, pc.poll_s) for _ in range(3))
    lookback = Lookback(cfg.track.lookback, spare_bytes=pc.memory_mb * 2**20)
    # the frame budget against the input's frame rate (`--realtime`): one frame at a time
    schedule = processor.budget() if pc.realtime else None
    rate = source.info.average_rate
    interval = 1 / float(rate) if rate else 1 / 30
    # a detector handed in (tests, the library API) cannot be cloned: one frame at a time
    overlapped = (OverlappedDetection(processor, cfg.detect.overlap)
                  if cfg.detect.overlap > 1 and processor.owns_detector and schedule is None
                  else None)

    def detect(item: Frame | Passthrough) -> Iterable[Frame | Passthrough]:
        if overlapped is not None:
            return [out for done in overlapped.push(item) for out in lookback.push(done)]
        if isinstance(item, Frame):
            start = time.perf_counter()
            found, failure = processor.detect(item)
            item = processor.apply(item, found, failure)
            if schedule is not None:
                schedule.done(found is not NOT_LOOKED, time.perf_counter() - start, interval)
        return list(lookback.push(item))

    def flush_detect() -> Iterable[Frame | Passthrough]:
        done = [] if overlapped is None else overlapped.flush()
        return [out for item in done for out in lookback.push(item)] + list(lookback.flush())

    def protect(item: Frame | Passthrough) -> Iterable[Frame | Passthrough]:
        if not isinstance(item, Frame):
            return (item,)
        out = processor.protect(item)
        report.count(item, out)
        return () if out is None else (out,)

    def encode(item: Frame | Passthrough) -> Iterable[Any]:
        if isinstance(item, Frame):
            sink.write(item)
        else:
            sink.passthrough(item)
        return ()

    stages = [
        Stage("decode", run, lambda item: (item,), source.items(), decoded),
        Stage("detect", run, detect, decoded, analyzed, flush=flush_detect),
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
    finally:
        if overlapped is not None:
            overlapped.close(wait=not stages[1].is_alive())
    for stage in stages:
        report.stage_busy_s[stage.stage] = round(stage.busy_s, 3)
    if schedule is not None:
        report.schedule_s = schedule.snapshot()["schedule_s"]
    if run.errors:
        exc = run.errors[0]
        if isinstance(exc, StreamguardError):
            raise exc
        raise PipelineError(f"pipeline stage failed: {type(exc).__name__}: {exc}") from exc


def _supervise(run: Run, stages: list[Stage], stall_s: float, sink: VideoSink, total: int,
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
