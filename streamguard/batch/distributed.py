"""Anonymize a footage library on a Ray cluster (with `cluster`, the only modules that import
ray).

The driver (this process) reads inputs and writes outputs; the cluster only computes. Each
video is cut at keyframes (`streamguard.batch.segments`); every segment becomes one call on a
worker actor that loaded the detector and the protection models once. The driver joins the
encoded segments back in order with the input's audio copied byte for byte, so the output has
the single-machine path's frames, timestamps and audio. Workers need streamguard installed and
its model files fetched (`streamguard fetch`), but no shared file system.

Faults: a segment whose worker or node dies is rerun on another worker (`ray.max_retries`); a
file whose data is bad fails alone, with its error, while the others go on; outputs appear under
their final names only when complete, and the manifest (`streamguard.batch.manifest`) makes a rerun
skip every output already finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamguard.config import Config
from streamguard.batch.cluster import connect, first_line
from streamguard.batch.manifest import Manifest
from streamguard.errors import ClusterError, PipelineError, StreamguardError
from streamguard.io.sink import OutputLock
from streamguard.io.source import VideoSource
from streamguard.process import FrameProcessor
from streamguard.report import RunReport
from streamguard.batch.segments import (
    EncodedSegment,
    SegmentJob,
    SegmentJoiner,
    SegmentMismatchError,
    iter_jobs,
    plan_segments,
    process_segment,
)

log = logging.getLogger(__name__)


class SegmentWorker:
    """A Ray actor: models loaded once, then one segment per call."""

    def __init__(self, cfg: Config):
        import ray

        self.cfg = cfg
        self.node = ray.get_runtime_context().get_node_id()
        self.processor: FrameProcessor | None = None
        self.error: StreamguardError | None = None
        try:
            self.processor = FrameProcessor(cfg)
        except StreamguardError as exc:  # e.g. model files not fetched on this node
            self.error = exc  # raised by ready(), where the driver receives it intact

    def ready(self) -> str:
        if self.error is not None:
            raise self.error
        return self.node

    def process(self, job: SegmentJob) -> EncodedSegment:
        part = process_segment(job, self.cfg, self.processor)
        part.worker = self.node[:12]
        return part


@dataclass
class FileResult:
    src: Path
    dst: Path
    report: RunReport | None = None
    error: StreamguardError | None = None
    skipped: bool = False


@dataclass
class BatchSummary:
    files: list[FileResult] = field(default_factory=list)
    segments: int = 0
    retried: int = 0  # segments rerun after their worker or node was lost
    workers: int = 0
    nodes: int = 0
    wall_s: float = 0.0
    frames: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"segments": self.segments, "retried_segments": self.retried,
                "workers": self.workers, "nodes": self.nodes, "wall_s": round(self.wall_s, 3),
                "frames": self.frames, "fps": round(self.fps, 2),
                "skipped": [str(f.dst) for f in self.files if f.skipped],
                "failed": {str(f.src): str(f.error) for f in self.files if f.error}}


# progress(files_done, files_total, frames_done, frames_total)
Progress = Callable[[int, int, int, int], None]


@dataclass
class _File:
    result: FileResult
    joiner: SegmentJoiner
    started: float
    superseded: bool = False  # given up in favour of an uncut rerun

    @property
    def dead(self) -> bool:
        return self.superseded or self.result.error is not None


@dataclass
class _Task:
    file: _File
    job: SegmentJob
    ref: Any  # the job in the object store (kept for retries)
    attempts: int = 0


class _Pool:
    """Worker actors, started in the background; dead ones are replaced while resources allow."""

    def __init__(self, ray: Any, cfg: Config):
        self.ray = ray
        self.cfg = cfg
        rc = cfg.ray
        cls = ray.remote(SegmentWorker)
        self._cls = cls.options(num_cpus=rc.cpus_per_worker, num_gpus=rc.gpus_per_worker,
                                max_restarts=0, max_task_retries=0)
        self.ready: dict[Any, str] = {}  # actor -> node id
        self.starting: dict[Any, Any] = {}  # ready() ref -> actor
        self.load: dict[Any, int] = {}
        self.wanted = self._capacity()
        self._last_live = time.monotonic()
        self.started = 0
        self.start_failures = 0
        self.start_error: StreamguardError | None = None

    @property
    def _gave_up_starting(self) -> bool:
        return self.start_failures >= max(3, 2 * self.wanted)

    def _capacity(self) -> int:
        rc = self.cfg.ray
        total = self.ray.cluster_resources()
        if rc.gpus_per_worker > 0:
            if total.get("GPU", 0) <= 0:
                raise ClusterError("ray.gpus_per_worker > 0 but the cluster has no GPUs")
            by_gpu = int(total["GPU"] / rc.gpus_per_worker)
        else:
            by_gpu = 1 << 30
        n = min(int(total.get("CPU", 0) // rc.cpus_per_worker), by_gpu)
        if rc.workers:
            n = min(n, rc.workers) if n else rc.workers
        return max(n, 1)

    def top_up(self) -> None:
        """Start actors up to the wanted number, as far as free resources allow."""
        free = self.ray.available_resources()
        rc = self.cfg.ray
        if self._gave_up_starting:
            return  # workers keep failing to start (e.g. a node without model files)
        missing = self.wanted - len(self.ready) - len(self.starting)
        can = int(free.get("CPU", 0) // rc.cpus_per_worker)
        if not self.ready and not self.starting:
            can = max(can, 1)  # always try one: it waits for resources to come back
        for _ in range(max(min(missing, can), 0)):
            actor = self._cls.remote(self.cfg)
            self.starting[actor.ready.remote()] = actor
            self.started += 1

    def poll_starting(self, timeout: float = 0) -> None:
        if not self.starting:
            return
        done, _ = self.ray.wait(list(self.starting), num_returns=len(self.starting),
                                timeout=timeout)
        for ref in done:
            actor = self.starting.pop(ref)
            try:
                node = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                log.warning("a worker failed to start: %s", first_line(exc))
                continue
            except self.ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                self.start_failures += 1
                self.start_error = cause if isinstance(cause, StreamguardError) else ClusterError(
                    f"a worker failed to start: {first_line(exc)}")
                log.error("a worker could not start: %s", self.start_error)
                self._kill(actor)
                continue
            self.ready[actor] = node
            self.load[actor] = 0

    def free_actor(self) -> Any | None:
        depth = self.cfg.ray.tasks_per_worker
        best = min(self.ready, key=lambda a: self.load[a], default=None)
        if best is None or self.load[best] >= depth:
            return None
        return best

    def lost(self, actor: Any) -> None:
        self.ready.pop(actor, None)
        self.load.pop(actor, None)
        self._kill(actor)

    def _kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone with its node
            log.debug("kill of a lost worker: %s", exc)

    def check_alive(self) -> None:
        if self.ready:
            self._last_live = time.monotonic()
            return
        if self.start_error is not None and self._gave_up_starting and not self.starting:
            raise self.start_error  # no worker anywhere could start: say why
        if time.monotonic() - self._last_live > self.cfg.ray.worker_start_timeout_s:
            raise ClusterError(
                f"no Ray worker could start for {self.cfg.ray.worker_start_timeout_s:.0f} s "
                "(cluster has too few free resources, or workers crash on start)")

    def nodes(self) -> int:
        return len(set(self.ready.values()))

    def shutdown(self) -> None:
        for actor in [*self.ready, *self.starting.values()]:
            self._kill(actor)


def anonymize_on_ray(pairs: list[tuple[Path, Path]], cfg: Config, address: str | None = None,
                     *, manifest_dir: Path | None = None, on_progress: Progress | None = None,
                     on_file: Callable[[FileResult], None] | None = None,
                     on_segment: Callable[[EncodedSegment], None] | None = None,
                     on_dispatch: Callable[[str, SegmentJob], None] | None = None,
                     ) -> BatchSummary:
    """Anonymize every (input, output) pair on the cluster. Per-file errors land in the
    summary (the other files go on); cluster-wide failures raise ClusterError.
    `on_dispatch(node_id, job)` is called as each segment is sent to a worker."""
    t0 = time.perf_counter()
    hooks = _Hooks(on_progress, on_file, on_segment, on_dispatch)
    summary = BatchSummary()
    manifest = Manifest(manifest_dir or _common_folder([d for _, d in pairs]), cfg)
    # one driver per output folder: a second one is refused before it does any work
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(manifest.path, what="into this output folder (a --ray job)")
    try:
        todo: list[tuple[Path, Path]] = []
        for src, dst in pairs:
            if manifest.finished(src, dst):
                summary.files.append(FileResult(src, dst, skipped=True))
                hooks.file(summary.files[-1])
            else:
                todo.append((src, dst))
        if todo:
            _Batch(connect(address), cfg, manifest, summary, todo, hooks).run()
    finally:
        lock.release()
    summary.frames = sum(r.report.frames for r in summary.files if r.report)
    summary.wall_s = time.perf_counter() - t0
    return summary


@dataclass
class _Hooks:
    on_progress: Progress | None = None
    on_file: Callable[[FileResult], None] | None = None
    on_segment: Callable[[EncodedSegment], None] | None = None
    on_dispatch: Callable[[str, SegmentJob], None] | None = None

    def file(self, result: FileResult) -> None:
        if self.on_file:
            self.on_file(result)


class _Batch:
    """One job's scheduling loop: hand segments to free workers, collect results in any
    order, rerun what was lost, join what came back, record what finished."""

    def __init__(self, ray: Any, cfg: Config, manifest: Manifest, summary: BatchSummary,
                 todo: list[tuple[Path, Path]], hooks: _Hooks):
        self.ray, self.cfg, self.manifest, self.summary, self.hooks = (
            ray, cfg, manifest, summary, hooks)
        self.pool = _Pool(ray, cfg)
        self.files: list[_File] = []
        self.in_flight: dict[Any, tuple[Any, _Task]] = {}  # result ref -> (actor, task)
        self.retry: deque[_Task] = deque()
        self.queue: deque[tuple[Path, Path, bool]] = deque((s, d, False) for s, d in todo)
        self._jobs: Iterator[_Task] | None = None
        self.frames_total = sum(_expected_frames(src) for src, _ in todo)
        self.files_total = len(todo)
        self.frames_done = 0
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                             ray.exceptions.OwnerDiedError, ray.exceptions.WorkerCrashedError,
                             ray.exceptions.NodeDiedError)

    def run(self) -> None:
        pool = self.pool
        try:
            pool.top_up()
            while True:
                pool.poll_starting()
                pool.check_alive()
                exhausted = self._dispatch()
                if exhausted and not self.in_flight and not self.retry:
                    break
                waitable = list(self.in_flight) + list(pool.starting)
                if not waitable:
                    pool.top_up()
                    time.sleep(0.2)
                    continue
                done, _ = self.ray.wait(waitable, num_returns=1, timeout=1.0)
                for ref in done:
                    if ref in self.in_flight:  # else a worker became ready (poll_starting)
                        self._collect(ref)
                if len(pool.ready) + len(pool.starting) < pool.wanted:
                    pool.top_up()
        except BaseException:
            for f in self.files:
                f.joiner.abort()
            raise
        finally:
            self.summary.workers = pool.started
            self.summary.nodes = pool.nodes()
            pool.shutdown()
        for f in self.files:
            if not f.joiner.done and not f.dead:
                f.joiner.abort()
                f.result.error = PipelineError(f"{f.result.src}: not every segment was written")
        self._progress()

    # -- handing out --------------------------------------------------------------------
    def _dispatch(self) -> bool:
        """Give every worker with room a segment; True when no work is left to hand out."""
        while (actor := self.pool.free_actor()) is not None:
            task = self._next_task()
            if task is None:
                return True
            self.in_flight[actor.process.remote(task.ref)] = (actor, task)
            self.pool.load[actor] += 1
            if self.hooks.on_dispatch:
                self.hooks.on_dispatch(self.pool.ready[actor], task.job)
        return False

    def _next_task(self) -> _Task | None:
        while True:
            if self.retry:
                task = self.retry.popleft()
            else:
                if self._jobs is None:
                    if not self.queue:
                        return None
                    self._jobs = self._read_jobs()
                task = next(self._jobs, None)
                if task is None:
                    self._jobs = None
                    if not self.queue:
                        return None
                    continue
            if not task.file.dead:  # else its file failed or is being redone uncut
                return task

    def _read_jobs(self) -> Iterator[_Task]:
        """Tasks file by file, segment by segment, read lazily (memory stays bounded). A file
        put back on the queue with whole=True is planned as one segment."""
        cfg = self.cfg
        while self.queue:
            src, dst, whole = self.queue.popleft()
            result = FileResult(src, dst)
            self.summary.files.append(result)
            try:
                plan = plan_segments(src, float("inf") if whole else cfg.ray.segment_s)
                joiner = SegmentJoiner(plan, dst, cfg)
            except StreamguardError as exc:
                result.error = exc
                self.hooks.file(result)
                continue
            f = _File(result, joiner, time.perf_counter())
            self.files.append(f)
            try:
                for job in iter_jobs(plan, str(src), dst.suffix, cfg.ray.context_frames):
                    if f.dead:
                        break
                    yield _Task(f, job, self.ray.put(job))
            except StreamguardError as exc:
                self._fail_file(f, exc)

    # -- collecting ---------------------------------------------------------------------
    def _collect(self, ref: Any) -> None:
        actor, task = self.in_flight.pop(ref)
        if actor in self.pool.load:
            self.pool.load[actor] -= 1
        try:
            part: EncodedSegment = self.ray.get(ref)
        except self._lost_errors as exc:
            self._lost(actor, task, exc)
            return
        except self.ray.exceptions.RayTaskError as exc:
            self._failed(task, exc)
            return
        f = task.file
        if f.dead:
            return
        if self.hooks.on_segment:
            self.hooks.on_segment(part)
        self.summary.segments += 1
        self.frames_done += part.frames
        try:
            f.joiner.add(part)
        except StreamguardError as exc:
            self._fail_file(f, exc)
            return
        if f.joiner.done:
            report = f.joiner.report
            report.wall_s = time.perf_counter() - f.started
            f.result.report = report
            self.manifest.record(f.result.src, f.result.dst, report.frames_written)
            self.hooks.file(f.result)
        self._progress()

    def _lost(self, actor: Any, task: _Task, exc: BaseException) -> None:
        """The worker (or its node) died with the segment: rerun it elsewhere."""
        self.pool.lost(actor)
        task.attempts += 1
        self.summary.retried += 1
        f, index = task.file, task.job.segment.index
        if task.attempts > self.cfg.ray.max_retries:
            self._fail_file(f, PipelineError(f"{f.result.src}: segment {index} lost "
                                             f"{task.attempts} times ({first_line(exc)})"))
        else:
            log.warning("%s: segment %d lost with its worker (%s); rerunning", f.result.src,
                        index, first_line(exc))
            self.retry.append(task)
        self.pool.top_up()

    def _failed(self, task: _Task, exc: BaseException) -> None:
        """The segment raised: the file fails with that error, or is redone uncut."""
        f = task.file
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SegmentMismatchError) and not f.dead:
            log.warning("%s: %s; processing it uncut instead", f.result.src, cause)
            f.superseded = True
            f.joiner.abort()
            self.summary.files.remove(f.result)
            self.queue.appendleft((f.result.src, f.result.dst, True))
            return
        self._fail_file(f, cause if isinstance(cause, StreamguardError) else PipelineError(
            f"{f.result.src}: segment {task.job.segment.index} failed: {first_line(exc)}"))

    def _fail_file(self, f: _File, exc: StreamguardError) -> None:
        if f.result.error is None and not f.superseded:
            f.result.error = exc
            f.joiner.abort()
            log.warning("%s: %s", f.result.src, exc)
            self.hooks.file(f.result)

    def _progress(self) -> None:
        if self.hooks.on_progress:
            done = sum(1 for r in self.summary.files if not r.skipped and (r.report or r.error))
            self.hooks.on_progress(done, self.files_total, self.frames_done, self.frames_total)


def _expected_frames(path: Path) -> int:
    try:
        with VideoSource(path) as source:
            return source.info.expected_frames
    except StreamguardError:
        return 0


def _common_folder(paths: list[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()
