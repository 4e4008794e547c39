"""Per-frame data: `Faces` (a frozen struct of arrays) and the `Frame` envelope.

Time travels with the pixels: a Frame carries its index, pts and time_base from decode to
encode, so output timing is the input's, frame for frame (VFR-safe).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Faces:
    """Face boxes of one frame.

    xyxy:     (N, 4) float32, pixel corners (x0, y0, x1, y1), x1 > x0 and y1 > y0.
    score:    (N,) float32 detector confidence (1.0 for boxes kept alive by the tracker).
    track_id: (N,) int64, -1 when untracked.
    """

    xyxy: np.ndarray
    score: np.ndarray
    track_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        if not (len(xyxy) == len(score) == len(track_id)):
            raise ValueError(
                f"Faces arrays disagree: xyxy {xyxy.shape}, score {score.shape}, "
                f"track_id {track_id.shape}"
            )
        if not np.all(np.isfinite(xyxy)):
            raise ValueError("Faces.xyxy holds NaN or inf")
        for name, arr in (("xyxy", xyxy), ("score", score), ("track_id", track_id)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_boxes(cls, xyxy: Any, score: Any = None) -> Faces:
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        score = np.ones(n, np.float32) if score is None else score
        return cls(xyxy, score, np.full(n, -1, np.int64))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Faces:
        return Faces(self.xyxy[index], self.score[index], self.track_id[index])

    @staticmethod
    def concat(items: list[Faces]) -> Faces:
        if not items:
            return Faces.empty()
        return Faces(
            np.concatenate([f.xyxy for f in items]),
            np.concatenate([f.score for f in items]),
            np.concatenate([f.track_id for f in items]),
        )


@dataclass(frozen=True)
class Frame:
    """One decoded video frame travelling through the pipeline.

    image: (H, W, 3) uint8 RGB. Never mutated after creation: stages return new Frames.
    pts/time_base: presentation time exactly as decoded (pts may be None for a few containers).
    faces: boxes to protect (None until detection ran).
    failed_closed: detection failed or timed out; the frame is protected whole (or dropped).
    """

    index: int
    pts: int | None
    time_base: Fraction | None
    image: np.ndarray
    faces: Faces | None = None
    failed_closed: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Frame:
        return dataclasses.replace(self, **changes)

    @property
    def time(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)


@dataclass(frozen=True)
class Passthrough:
    """A demuxed packet of a non-video stream (audio, subtitles, data), copied unchanged.

    It travels in demux order with the frames so the muxer interleaves it where it was.
    """

    packet: Any
    stream_index: int
