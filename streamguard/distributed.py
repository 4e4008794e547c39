"""Anonymize a footage library on a Ray cluster: the only module that imports ray.

The driver (this process) reads inputs and writes outputs; the cluster only computes. Each
video is cut at keyframes (`streamguard.segments`); every segment becomes one call on a
worker actor that loaded the detector and the protection models once. The driver joins the
encoded segments back in order with the input's audio copied byte for byte, so the output has
the single-machine path's frames, timestamps and audio. Workers need streamguard installed and
its model files fetched (`streamguard fetch`), but no shared file system.

Faults: a segment whose worker or node dies is rerun on another worker (`ray.max_retries`); a
file whose data is bad fails alone, with its error, while the others go on; outputs appear under
their final names only when complete, and the manifest (`streamguard.manifest`) makes a rerun
skip every output already finished.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamguard.config import Config
from streamguard.errors import (
    ClusterError,
    MissingDependencyError,
    PipelineError,
    StreamguardError,
)
from streamguard.io.source import VideoSource
from streamguard.manifest import Manifest
from streamguard.pipeline import FrameProcessor
from streamguard.report import RunReport
from streamguard.segments import (
    EncodedSegment,
    Plan,
    SegmentJob,
    SegmentJoiner,
    SegmentMismatchError,
    iter_jobs,
    plan_segments,
    process_segment,
)

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "--ray needs Ray: pip install 'streamguard[ray]' (or pip install ray==2.60.0)"
        ) from None
    return ray


class SegmentWorker:
    """A Ray actor: models loaded once, then one segment per call."""

    def __init__(self, cfg: Config):
        import ray

        self.cfg = cfg
        self.node = ray.get_runtime_context().get_node_id()
        self.processor = FrameProcessor(cfg)

    def ready(self) -> str:
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
    plan: Plan
    joiner: SegmentJoiner
    started: float
    remaining: int  # segments not yet joined
    whole: bool = False  # processed uncut (after its segments did not add up)
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
                log.warning("a worker failed to start: %s", _first_line(exc))
                continue
            except self.ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", exc)
                if isinstance(cause, StreamguardError):
                    raise cause from None  # e.g. model files missing on the workers
                raise ClusterError(f"a worker failed to start: {_first_line(exc)}") from None
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
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception as exc:  # already gone with its node
            log.debug("kill of a lost worker: %s", exc)

    def check_alive(self) -> None:
        if self.ready:
            self._last_live = time.monotonic()
        elif time.monotonic() - self._last_live > self.cfg.ray.worker_start_timeout_s:
            raise ClusterError(
                f"no Ray worker could start for {self.cfg.ray.worker_start_timeout_s:.0f} s "
                "(cluster has too few free resources, or workers crash on start)")

    def nodes(self) -> int:
        return len(set(self.ready.values()))

    def shutdown(self) -> None:
        for actor in [*self.ready, *self.starting.values()]:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as exc:
                log.debug("kill: %s", exc)


def connect(address: str | None) -> Any:
    """Connect to a cluster: None/"" = Ray's default (RAY_ADDRESS, a running local cluster, or a
    new local one), "auto", "local", or host:port."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address and address not in ("auto", "local"):
        _probe(address)  # Ray itself retries an unreachable head for minutes
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at "
                           f"{address or 'default'}: {_first_line(exc)}") from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address '{address}' is not HOST:PORT, 'auto' or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: "
                           f"{exc.strerror or exc}") from None


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
    summary = BatchSummary()
    manifest = Manifest(manifest_dir or _common_folder([d for _, d in pairs]), cfg)
    todo: list[tuple[Path, Path]] = []
    for src, dst in pairs:
        if manifest.finished(src, dst):
            result = FileResult(src, dst, skipped=True)
            summary.files.append(result)
            if on_file:
                on_file(result)
        else:
            todo.append((src, dst))
    totals = {"files": len(todo), "frames": sum(_expected_frames(s) for s, _ in todo),
              "frames_done": 0}

    def progress() -> None:
        if on_progress:
            done = sum(1 for r in summary.files if not r.skipped and (r.report or r.error))
            on_progress(done, totals["files"], totals["frames_done"], totals["frames"])

    if not todo:
        summary.wall_s = time.perf_counter() - t0
        return summary
    ray = connect(address)
    pool = _Pool(ray, cfg)
    files: list[_File] = []
    in_flight: dict[Any, tuple[Any, _Task]] = {}  # result ref -> (actor, task)
    retry: deque[_Task] = deque()
    queue: deque[tuple[Path, Path, bool]] = deque((src, dst, False) for src, dst in todo)
    jobs = _jobs(queue, cfg, summary, files, on_file)
    exhausted = False

    def fail_file(f: _File, exc: StreamguardError) -> None:
        if f.result.error is None:
            f.result.error = exc
            f.joiner.abort()
            log.warning("%s: %s", f.result.src, exc)
            if on_file:
                on_file(f.result)

    try:
        pool.top_up()
        while True:
            pool.poll_starting()
            pool.check_alive()
            # hand out work while workers have room
            while (actor := pool.free_actor()) is not None:
                task = retry.popleft() if retry else None
                if task is None and not exhausted:
                    task = next(jobs, None)
                    exhausted = task is None
                if task is None:
                    break
                if task.file.dead:
                    continue  # its file already failed or is being redone whole
                in_flight[actor.process.remote(task.ref)] = (actor, task)
                pool.load[actor] += 1
                if on_dispatch:
                    on_dispatch(pool.ready[actor], task.job)
            if exhausted and not in_flight and not retry:
                break
            waitable = list(in_flight) + list(pool.starting)
            if not waitable:
                pool.top_up()
                time.sleep(0.2)
                continue
            done, _ = ray.wait(waitable, num_returns=1, timeout=1.0)
            for ref in done:
                if ref not in in_flight:
                    continue  # a worker became ready: picked up by poll_starting
                actor, task = in_flight.pop(ref)
                if actor in pool.load:
                    pool.load[actor] -= 1
                f = task.file
                try:
                    part: EncodedSegment = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                        ray.exceptions.OwnerDiedError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError) as exc:
                    pool.lost(actor)
                    task.attempts += 1
                    summary.retried += 1
                    if task.attempts > cfg.ray.max_retries:
                        fail_file(f, PipelineError(
                            f"{f.result.src}: segment {task.job.segment.index} lost "
                            f"{task.attempts} times ({_first_line(exc)})"))
                    else:
                        log.warning("%s: segment %d lost with its worker (%s); rerunning",
                                    f.result.src, task.job.segment.index, _first_line(exc))
                        retry.append(task)
                    pool.top_up()
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, SegmentMismatchError) and not f.dead:
                        log.warning("%s: %s; processing it uncut instead", f.result.src, cause)
                        f.superseded = True
                        f.joiner.abort()
                        summary.files.remove(f.result)
                        queue.appendleft((f.result.src, f.result.dst, True))
                        if exhausted:  # a finished generator sees no new work: start anew
                            jobs = _jobs(queue, cfg, summary, files, on_file)
                            exhausted = False
                        continue
                    err = cause if isinstance(cause, StreamguardError) else PipelineError(
                        f"{f.result.src}: segment {task.job.segment.index} failed: "
                        f"{_first_line(exc)}")
                    fail_file(f, err)
                    continue
                if f.dead:
                    continue
                if on_segment:
                    on_segment(part)
                summary.segments += 1
                totals["frames_done"] += part.frames
                try:
                    f.joiner.add(part)
                except StreamguardError as exc:
                    fail_file(f, exc)
                    continue
                f.remaining -= 1
                if f.joiner.done:
                    report = f.joiner.report
                    report.wall_s = time.perf_counter() - f.started
                    f.result.report = report
                    manifest.record(f.result.src, f.result.dst, report.frames_written)
                    if on_file:
                        on_file(f.result)
                progress()
            if len(pool.ready) + len(pool.starting) < pool.wanted:
                pool.top_up()
    except BaseException:
        for f in files:
            f.joiner.abort()
        raise
    finally:
        summary.workers = pool.started
        summary.nodes = pool.nodes()
        pool.shutdown()
    for f in files:
        if not f.joiner.done and not f.dead:
            f.joiner.abort()
            f.result.error = PipelineError(f"{f.result.src}: not every segment was written")
    summary.frames = sum(r.report.frames for r in summary.files if r.report)
    summary.wall_s = time.perf_counter() - t0
    progress()
    return summary


def _jobs(queue: deque[tuple[Path, Path, bool]], cfg: Config, summary: BatchSummary,
          files: list[_File], on_file: Callable[[FileResult], None] | None) -> Iterator[_Task]:
    """Tasks file by file, segment by segment, read lazily (memory stays bounded). A file put
    back on the queue (whole=True) is planned as one segment."""
    import ray

    while queue:
        src, dst, whole = queue.popleft()
        result = FileResult(src, dst)
        summary.files.append(result)
        try:
            plan = plan_segments(src, float("inf") if whole else cfg.ray.segment_s)
            joiner = SegmentJoiner(plan, dst, cfg)
        except StreamguardError as exc:
            result.error = exc
            if on_file:
                on_file(result)
            continue
        f = _File(result, plan, joiner, time.perf_counter(), len(plan.segments), whole)
        files.append(f)
        try:
            for job in iter_jobs(plan, str(src), dst.suffix, cfg.ray.context_frames):
                if f.dead:
                    break
                yield _Task(f, job, ray.put(job))
        except StreamguardError as exc:
            if not f.dead:
                result.error = exc
                joiner.abort()
                if on_file:
                    on_file(result)


def _expected_frames(path: Path) -> int:
    try:
        with VideoSource(path) as source:
            return source.info.expected_frames
    except StreamguardError:
        return 0


def _common_folder(paths: list[Path]) -> Path:
    import os

    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
