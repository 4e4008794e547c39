"""What a run did: the file run report (`--report run.json`) and the live streams' metrics
(`StreamStats`, exposed in the Prometheus text format by `MetricsServer`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from streamguard.frames import Faces


log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """One file's run: frames read, written and dropped, frames failed closed, faces per
    frame, tracks, copied packets and streams left out, busy seconds per pipeline stage."""

    input: str
    output: str
    mode: str
    resolution: str = ""
    frames: int = 0  # frames read and processed
    frames_written: int = 0
    frames_dropped: int = 0  # fail-closed frames dropped by policy
    failed_closed: int = 0  # frames whose detection failed or timed out
    frames_rescaled: int = 0  # frames whose size changed mid-stream, rescaled to the first
    packets_skipped: int = 0  # damaged video packets skipped (pipeline.on_corrupt = "skip")
    detect_errors: int = 0
    faces: int = 0  # face boxes protected, summed over frames
    faces_per_frame: dict[int, int] = field(default_factory=dict)  # n faces -> frames
    tracks: int = 0
    packets_copied: int = 0
    dropped_streams: list[str] = field(default_factory=list)
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def count_frame(self, faces: Faces | None, dropped: bool) -> None:
        self.frames += 1
        if dropped:
            self.frames_dropped += 1
        else:
            self.frames_written += 1
        n = len(faces) if faces is not None else 0
        self.faces += n
        self.faces_per_frame[n] = self.faces_per_frame.get(n, 0) + 1

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fps"] = round(self.fps, 2)
        data["wall_s"] = round(self.wall_s, 3)
        data["faces_per_frame"] = {str(k): v for k, v in sorted(self.faces_per_frame.items())}
        return data


def write_reports(path: str | Path, reports: list[RunReport], extra: dict | None = None) -> None:
    """One JSON document: totals plus one record per file."""
    totals = Counter()
    for r in reports:
        totals.update({"files": 1, "frames": r.frames, "faces": r.faces, "tracks": r.tracks,
                       "failed_closed": r.failed_closed, "frames_dropped": r.frames_dropped})
    doc = {"totals": dict(totals), "files": [r.to_dict() for r in reports], **(extra or {})}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


# -- live metrics ---------------------------------------------------------------------------------

@dataclass
class StreamStats:
    """One live stream's counters; `snapshot()` is what metrics and `serve`'s summary show."""

    audio_packets: int = 0
    worker_restarts: int = 0
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    placeholders: int = 0
    failed_closed: int = 0
    faces: int = 0
    reconnects: int = 0
    frames_rescaled: int = 0
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
                "frames_rescaled": self.frames_rescaled,
                "audio_packets": self.audio_packets, "worker_restarts": self.worker_restarts,
                "fps_out": round(self.frames_out / elapsed, 2),
                "latency_p50_ms": pick(0.5), "latency_p99_ms": pick(0.99),
                "last_error": self.last_error}


PROMETHEUS_GAUGES = ("frames_in", "frames_out", "dropped", "placeholders", "failed_closed",
                     "faces", "reconnects", "connected", "fps_out", "latency_p50_ms",
                     "latency_p99_ms", "audio_packets", "worker_restarts")


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(snapshots: dict[str, dict[str, Any]]) -> str:
    """The Prometheus text exposition of {stream name: StreamStats.snapshot()}."""
    lines = []
    for key in PROMETHEUS_GAUGES:
        lines.append(f"# TYPE streamguard_{key} gauge")
        for name, snap in snapshots.items():
            if snap.get(key) is not None:
                lines.append(f'streamguard_{key}{{stream="{_label(name)}"}} {snap[key]}')
    return "\n".join(lines) + "\n"


class MetricsServer:
    """`/metrics` in the Prometheus text format on host:port (loopback by default);
    `snapshots()` gives {stream name: snapshot} at each scrape."""

    def __init__(self, snapshots: Callable[[], dict[str, dict[str, Any]]], host: str,
                 port: int):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = prometheus_text(snapshots()).encode()
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
