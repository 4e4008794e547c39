"""What a run did: the file run report (`--report run.json`) and the live streams' metrics
(`StreamStats`, exposed through prometheus_client by `StreamCollector`; served with the status
page by `streamguard.live.http`)."""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamguard.errors import OutputError
from streamguard.frames import Frame


log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class FrameCounts:
    """What every path counts of each frame at protection, one way: the file runner, the Ray
    segments and the live streams call `count`; the run report, the live status page and the
    Prometheus metrics all read these."""

    frames: int = 0  # frames read and processed
    frames_written: int = 0
    frames_dropped: int = 0  # fail-closed frames dropped by policy
    failed_closed: int = 0  # frames protected whole: detection failed or timed out, or damaged
    frames_damaged: int = 0  # frames the decoder patched over lost data (protect.damaged)
    detect_errors: int = 0  # frames whose detector raised (not timeouts)
    faces: int = 0  # face boxes protected, summed over frames
    faces_per_frame: dict[int, int] = field(default_factory=dict)  # n faces -> frames

    def count(self, frame: Frame, protected: Frame | None) -> None:
        """One frame through protection: `protected` None when policy dropped it."""
        self.frames += 1
        if protected is None:
            self.frames_dropped += 1
        else:
            self.frames_written += 1
        self.failed_closed += frame.failed_closed
        self.frames_damaged += frame.damaged
        self.detect_errors += frame.detect_error
        n = len(frame.faces) if frame.faces is not None else 0
        self.faces += n
        self.faces_per_frame[n] = self.faces_per_frame.get(n, 0) + 1

    def add(self, other: FrameCounts) -> None:
        """Add another part's counts (a segment of the same file)."""
        for name in ("frames", "frames_written", "frames_dropped", "failed_closed",
                     "frames_damaged", "detect_errors", "faces"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for n, count in other.faces_per_frame.items():
            self.faces_per_frame[n] = self.faces_per_frame.get(n, 0) + count


@dataclass(kw_only=True)
class RunReport(FrameCounts):
    """One file's run: the frame counts, plus tracks, copied packets and streams left out,
    busy seconds per pipeline stage."""

    input: str
    output: str
    mode: str
    resolution: str = ""
    frames_rescaled: int = 0  # frames whose size changed mid-stream, rescaled to the first
    packets_skipped: int = 0  # damaged video packets skipped (pipeline.on_corrupt = "skip")
    pts_discontinuities: int = 0  # timestamps that went back or jumped ahead (joined files)
    tracks: int = 0
    packets_copied: int = 0
    dropped_streams: list[str] = field(default_factory=list)
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    schedule_s: dict[str, float] = field(default_factory=dict)  # `--realtime`: s per level
    wall_s: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fps"] = round(self.fps, 2)
        data["wall_s"] = round(self.wall_s, 3)
        data["faces_per_frame"] = {str(k): v for k, v in sorted(self.faces_per_frame.items())}
        return data


def check_report_path(path: str | Path) -> Path:
    """Refuse a report path that cannot be written, before any work starts: its folder must
    exist and take a file (a probe file is created there and removed)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: cannot write the report: it is a folder")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: cannot write the report: no such folder {path.parent}")
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report ({exc.strerror})") from None
    os.close(fd)
    probe.unlink(missing_ok=True)
    return path


def write_reports(path: str | Path, reports: list[RunReport], extra: dict | None = None,
                  undo: list[str] | None = None) -> None:
    """One JSON document: totals plus one record per file, written whole or not at all. If
    it cannot be written after all (a full disk), the run failed: the outputs in `undo` (what
    it wrote) are removed too."""
    totals = Counter()
    for r in reports:
        totals.update({"files": 1, "frames": r.frames, "faces": r.faces, "tracks": r.tracks,
                       "failed_closed": r.failed_closed, "frames_dropped": r.frames_dropped})
    doc = {"totals": dict(totals), "files": [r.to_dict() for r in reports], **(extra or {})}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        for out in undo or ():
            Path(out).unlink(missing_ok=True)
        raise OutputError(f"{path}: writing the report failed ({exc.strerror}); the outputs "
                          "of this run were removed") from None


# -- live metrics ---------------------------------------------------------------------------------

LATENCY_BUCKETS_MS = (10, 25, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)


@dataclass(kw_only=True)
class StreamStats(FrameCounts):
    """One live stream's counters: the frame counts at protection, plus the input's and the
    outputs' own; `snapshot()` is what metrics, the status page and `serve`'s summary show."""

    audio_packets: int = 0
    worker_restarts: int = 0
    frames_in: int = 0
    frames_out: int = 0  # protected frames and placeholders delivered
    dropped: int = 0  # frames dropped because processing fell behind
    placeholders: int = 0
    placeholder_s: float = 0.0
    reconnects: int = 0
    frames_rescaled: int = 0
    frames_corrupt: int = 0
    pts_discontinuities: int = 0  # the camera's clock jumped back or ahead within a connection
    frames_lost: int = 0  # whole frames missing from the camera's time (lost on the way)
    output_failures: int = 0  # failed tries to deliver to an output (an RTSP publish target)
    output_error: str = ""  # why an output is failing now ("" when all deliver)
    # the frame budget's level and seconds per level (`DetectSchedule.snapshot`); {} when off
    schedule: dict = field(default_factory=dict)
    connected: bool = False
    last_error: str = ""
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    # the same less the time a frame waited in the live look-back (held on purpose)
    processing_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    latency_counts: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    latency_sum_ms: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def observe_latency(self, ms: float, held_ms: float = 0.0) -> None:
        """One frame's added latency (`held_ms` of it spent in the look-back): kept for the
        percentiles and counted in the histogram."""
        self.latencies_ms.append(ms)
        self.processing_ms.append(ms - held_ms)
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.latency_sum_ms += ms

    def snapshot(self) -> dict[str, Any]:
        def percentile(values) -> Any:
            ordered = sorted(values)
            return (lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
                    ) if ordered else (lambda q: None)

        pick, processing = percentile(self.latencies_ms), percentile(self.processing_ms)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return {"frames_in": self.frames_in, "frames_out": self.frames_out,
                "dropped": self.dropped, "placeholders": self.placeholders,
                "placeholder_s": round(self.placeholder_s, 2),
                "failed_closed": self.failed_closed, "faces": self.faces,
                "reconnects": self.reconnects, "connected": int(self.connected),
                "frames_rescaled": self.frames_rescaled, "frames_corrupt": self.frames_corrupt,
                "pts_discontinuities": self.pts_discontinuities,
                "frames_lost": self.frames_lost,
                "output_failures": self.output_failures, "output_error": self.output_error,
                "frames_damaged": self.frames_damaged, "detect_errors": self.detect_errors,
                "audio_packets": self.audio_packets, "worker_restarts": self.worker_restarts,
                "fps_out": round(self.frames_out / elapsed, 2),
                "latency_p50_ms": pick(0.5), "latency_p99_ms": pick(0.99),
                "processing_p50_ms": processing(0.5), "processing_p99_ms": processing(0.99),
                "latency_counts": list(self.latency_counts),
                "latency_sum_ms": round(self.latency_sum_ms, 3),
                "schedule": self.schedule.get("schedule", "full"),
                "schedule_every": self.schedule.get("schedule_every", 1),
                "schedule_s": dict(self.schedule.get("schedule_s", {})),
                "last_error": self.last_error}


# name (without the streamguard_ prefix; counters get prometheus_client's _total) -> help
COUNTERS = {
    "frames_in": "Frames read from the camera.",
    "frames_out": "Frames delivered to the outputs (protected, or placeholders).",
    "dropped": "Frames dropped because processing fell behind (never emitted unprotected).",
    "placeholders": "Placeholder frames emitted while the camera was away.",
    "placeholder_s": "Seconds of placeholder output while the camera was away.",
    "failed_closed": "Frames protected whole (or dropped) because detection failed, or because "
                     "lost video data damaged them (protect.damaged).",
    "faces": "Faces protected, summed over frames.",
    "reconnects": "Camera reconnect attempts.",
    "frames_rescaled": "Frames rescaled to the stream's first size.",
    "frames_corrupt": "Frames the decoder flagged as damaged (lost packets concealed).",
    "frames_lost": "Whole frames missing from the camera's time (lost on the way, e.g. over "
                   "UDP); the frames after them are damaged up to the next keyframe.",
    "output_failures": "Failed tries to deliver to an output (an RTSP publish target that "
                       "refuses or went away; retried with backoff).",
    "pts_discontinuities": "Times the camera's clock jumped back or ahead by more than 10 s "
                           "within a connection (re-anchored; output time never goes back).",
    "frames_damaged": "Frames flagged damaged and those after them until the next intact "
                      "keyframe (protect.damaged says how they are protected).",
    "detect_errors": "Frames whose detector raised (protected whole).",
    "audio_packets": "Audio packets copied to the outputs.",
    "worker_restarts": "Detection worker processes restarted.",
}
GAUGES = {
    "connected": "1 while the camera delivers frames.",
    "detect_schedule": "The frame budget's level in force: detection on every N-th frame "
                       "(1 = full).",
    "fps_out": "Frames out per second since the stream started.",
}


class StreamCollector:
    """A prometheus_client collector over {stream name: StreamStats.snapshot()}: one snapshot
    per stream per scrape, every metric labelled by stream."""

    def __init__(self, snapshots: Callable[[], dict[str, dict[str, Any]]]):
        self.snapshots = snapshots

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
        )

        snaps = self.snapshots()
        for key, text in COUNTERS.items():
            fam = CounterMetricFamily(f"streamguard_{key}", text, labels=["stream"])
            for name, snap in snaps.items():
                fam.add_metric([name], snap[key])
            yield fam
        for key, text in GAUGES.items():
            fam = GaugeMetricFamily(f"streamguard_{key}", text, labels=["stream"])
            for name, snap in snaps.items():
                fam.add_metric([name], snap["schedule_every" if key == "detect_schedule"
                                            else key])
            yield fam
        fam = CounterMetricFamily("streamguard_detect_schedule_seconds", "Seconds spent at "
                                  "each level of the frame budget.", labels=["stream", "level"])
        for name, snap in snaps.items():
            for level, seconds in snap["schedule_s"].items():
                fam.add_metric([name, level], seconds)
        yield fam
        hist = HistogramMetricFamily("streamguard_latency_ms", "Added latency per frame, "
                                     "camera to outputs, in milliseconds.", labels=["stream"])
        for name, snap in snaps.items():
            counts, total = snap["latency_counts"], 0
            buckets = []
            for bound, count in zip((*LATENCY_BUCKETS_MS, float("inf")), counts):
                total += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), total))
            hist.add_metric([name], buckets, snap["latency_sum_ms"])
        yield hist


def metrics_text(snapshots: dict[str, dict[str, Any]]) -> bytes:
    """The Prometheus exposition of some stream snapshots (prometheus_client's own format)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StreamCollector(lambda: snapshots))
    return generate_latest(registry)
