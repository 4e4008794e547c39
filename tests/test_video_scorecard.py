"""The video identity scorecard's geometry and averaging (benchmarks/privacy_video.py), and the
threat it measures: frames mosaicked on a new grid each are worth more averaged than alone;
track-locked frames are not."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pv = pytest.importorskip("privacy_video")

from streamguard.config import ProtectConfig  # noqa: E402
from streamguard.frames import Faces  # noqa: E402
from streamguard.protect import build_video_protector  # noqa: E402


def textured_face(seed: int = 0) -> np.ndarray:
    """A 128 px 'face' crop with detail finer than a mosaic cell (8 px at 8 blocks)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (16, 16, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(coarse, (128, 128), interpolation=cv2.INTER_CUBIC), 0,
                   255).astype(np.uint8)


def placed(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) placements: scale 1, sub-cell wandering translation."""
    return np.stack([np.ones(n), 200 + rng.uniform(0, 8, n), 100 + rng.uniform(0, 8, n)], 1)


def test_registration_undoes_the_placement():
    face = textured_face()
    place = np.array([[1.2, 201.3, 90.7]])
    frame = pv.render(face, place, np.random.default_rng(0))[0]
    back = pv.register(frame, 1.2, 1.2, 201.3, 90.7)
    err = np.abs(back[8:-8, 8:-8] - face[8:-8, 8:-8].astype(np.float32)).mean()
    assert err < 4, err  # interpolation only
    assert pv.box_placement(np.array([240.0, 128.4, 316.8, 205.2])) == pytest.approx(
        (1.2, 1.2, 201.6, 90.0))


def test_the_k_average_is_the_mean_of_k_registered_frames():
    """Frame k shows a flat face of value 10 k: the K = 4 average is 15 everywhere, and the
    multi-frame attacker gets every frame for K <= 16, every 4th of 64."""
    frames = [np.full((360, 640, 3), 10 * k % 250, np.uint8) for k in range(64)]
    places = [(1.0, 1.0, 100.0, 100.0)] * 64
    got = pv.averages(frames, places)
    (avg4, stack4), = got[4]
    assert np.allclose(avg4, 15)
    assert stack4.shape == (4, 128, 128, 3)
    (avg64, stack64), = got[64]
    assert np.allclose(avg64, np.mean([10 * k % 250 for k in range(64)]))
    assert stack64.shape == (16, 128, 128, 3) and np.allclose(stack64[1], 40)


def _protected_registered(lock: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """K frames of a face wandering by sub-cell amounts, found by a detector whose boxes
    jitter by up to half a cell, protected (mosaic, 8 blocks) with the given lock, registered
    on the face: (the K-average, the original crop)."""
    face = textured_face(1)
    rng = np.random.default_rng(3)
    place = placed(k, rng)
    frames = pv.render(face, place, rng)
    protect = build_video_protector(ProtectConfig(mode="mosaic", lock=lock))
    out = []
    for f, (s, tx, ty) in zip(frames, place):
        jx, jy = rng.uniform(-4, 4, 2)
        box = [tx + 32 * s + jx, ty + 32 * s + jy, tx + 96 * s + jx, ty + 96 * s + jy]
        out.append(protect(f, Faces(np.array([box], np.float32), np.ones(1, np.float32),
                                    np.array([1]))))
    (avg, _), = pv.averages(out, [(s, s, tx, ty) for s, tx, ty in place])[k]
    return avg, face


def _error(avg: np.ndarray, face: np.ndarray) -> float:
    return float(np.abs(avg[24:104, 24:104] - face[24:104, 24:104]).mean())


def test_averaging_frames_on_new_grids_recovers_detail_and_the_lock_stops_it():
    one = _error(*_protected_registered("frame", 1))
    many = _error(*_protected_registered("frame", 16))
    locked = _error(*_protected_registered("track", 16))
    assert many < 0.9 * one  # the threat: 16 averaged frames see finer than one
    assert locked > 1.15 * many  # the lock: no better than one mosaic, smeared
