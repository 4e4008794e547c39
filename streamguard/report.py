"""The run report: what a run did, as a JSON-ready record (`--report run.json`)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamguard.frames import Faces


@dataclass
class RunReport:
    input: str
    output: str
    mode: str
    resolution: str = ""
    frames: int = 0  # frames read and processed
    frames_written: int = 0
    frames_dropped: int = 0  # fail-closed frames dropped by policy
    failed_closed: int = 0  # frames whose detection failed or timed out
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
