"""The track lock: one grid and held colours per face track, so frames averaged after
registration on the face carry nothing a single frame does not show."""

from __future__ import annotations

import numpy as np
import pytest

from streamguard.config import Config, ProtectConfig
from streamguard.frames import Faces, Frame
from streamguard.process import FrameProcessor
from streamguard.protect import CellProtector, TrackLock, build_video_protector
from streamguard.protect.locked import grown_region, sample_cells


def scene(seed: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A smooth textured picture plus per-frame sensor noise (seeded): a resampled mosaic of
    two such frames differs, a held one does not."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.float32)
    base = np.kron(base, np.ones((8, 8, 1), np.float32))
    noise = np.random.default_rng(seed).normal(0, 6, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def one_face(box, tid: int = 5) -> Faces:
    return Faces(np.array([box], np.float32), np.ones(1, np.float32), np.array([tid]))


def lock(mode: str = "mosaic", **kw) -> TrackLock:
    cfg = ProtectConfig(mode=mode, **kw)
    protector = build_video_protector(cfg)
    assert isinstance(protector, TrackLock)
    return protector


def jitter(i: int) -> tuple[float, float]:
    """Sub-cell box motion (cells are 8 px here): what a detector's boxes do on a still face."""
    return (1.7 * np.sin(i * 1.3), 1.2 * np.cos(i * 0.7))


def test_a_jittering_face_keeps_one_grid_and_one_mosaic():
    """Consecutive frames of a face moving by sub-cell amounts: identical cell geometry and
    identical pixels inside the grid while the colours are held; the per-frame mosaic gives a
    new picture every frame."""
    locked, per_frame = lock(hold_frames=30), CellProtector(ProtectConfig(mode="mosaic"))
    rects, held, fresh = set(), [], []
    for i in range(20):
        dx, dy = jitter(i)
        faces = one_face([120 + dx, 80 + dy, 184 + dx, 160 + dy])
        image = scene(i)
        held.append(locked(image, faces))
        fresh.append(per_frame(image, faces))
        rects.add(locked.geometry(5))
    assert len(rects) == 1
    (rect, rows, cols), = rects
    assert (rect[2] - rect[0]) / cols == pytest.approx(8, abs=0.5)  # 8 blocks across 64 px
    inside = np.s_[rect[1]:rect[3], rect[0]:rect[2]]
    held, fresh = [h[inside] for h in held], [f[inside] for f in fresh]
    assert all(np.array_equal(h, held[0]) for h in held)
    assert sum(not np.array_equal(f, fresh[0]) for f in fresh) >= 15


def test_by_default_colours_follow_the_face_slowly_on_a_locked_grid():
    """The default samples every frame and fades the new colours in: one grid throughout,
    and from frame to frame the cells move a fraction of what a fresh mosaic's do."""
    cfg = Config().protect
    assert cfg.lock == "track" and cfg.hold_frames == 1 and cfg.fade_frames >= 2
    locked, per_frame = lock(), CellProtector(ProtectConfig(mode="mosaic"))
    rects, held, fresh = set(), [], []
    for i in range(20):
        dx, dy = jitter(i)
        faces = one_face([120 + dx, 80 + dy, 184 + dx, 160 + dy])
        image = scene(i)
        held.append(locked(image, faces).astype(np.float32))
        fresh.append(per_frame(image, faces).astype(np.float32))
        rects.add(locked.geometry(5))
    assert len(rects) == 1
    (rect, _, _), = rects
    inside = np.s_[rect[1]:rect[3], rect[0]:rect[2]]
    step = lambda seq: np.mean([np.abs(b[inside] - a[inside]).mean()  # noqa: E731
                                for a, b in zip(seq[5:], seq[6:])])
    assert step(held) < 0.35 * step(fresh)


def test_the_face_box_is_always_inside_the_painted_grid():
    """Fast motion and growth: the grid moves as soon as the face would leave it."""
    locked = lock()
    for i in range(40):
        x, size = 10 + 7 * i, 40 + 2 * i
        box = [x, 60, x + size, 60 + size * 1.2]
        image = scene(i)
        out = locked(image, one_face(box))
        (x0, y0, x1, y1), rows, cols = locked.geometry(5)
        assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3], i
        inner = out[int(box[1]):int(box[3]), int(box[0]):min(int(box[2]), 320)]
        assert len(np.unique(inner.reshape(-1, 3), axis=0)) <= rows * cols
        assert not np.array_equal(inner, image[int(box[1]):int(box[3]),
                                               int(box[0]):min(int(box[2]), 320)])


def test_colours_are_sampled_again_after_hold_frames_and_fade_in():
    locked = lock(hold_frames=5, fade_frames=2)
    faces = one_face([100, 60, 164, 140])
    dark, bright = scene(0) // 2, scene(0)
    outs = [locked(dark if i < 3 else bright, faces)[60:140, 100:164].astype(int)
            for i in range(10)]
    old, new = outs[0], outs[9]
    assert all(np.array_equal(o, old) for o in outs[:5])  # held through the brightening
    for mix in outs[5:7]:  # fading: every pixel between the two samples, neither of them
        assert ((mix >= np.minimum(old, new) - 1) & (mix <= np.maximum(old, new) + 1)).all()
        assert not np.array_equal(mix, old) and not np.array_equal(mix, new)
    assert all(np.array_equal(o, new) for o in outs[7:])
    assert new.mean() > old.mean() + 30


def test_an_untracked_face_gets_the_per_frame_mosaic():
    cfg = ProtectConfig(mode="mosaic")
    faces = Faces(np.array([[50, 50, 114, 130]], np.float32), np.ones(1, np.float32),
                  np.array([-1]))
    image = scene(3)
    assert np.array_equal(lock()(image, faces), CellProtector(cfg)(image, faces))


def test_a_face_cut_by_the_frame_edge_is_painted_where_it_is_visible():
    locked = lock()
    image = scene(1)
    out = locked(image, one_face([-30, 100, 34, 180]))  # half outside the left edge
    (x0, _, x1, _), _, cols = locked.geometry(5)
    assert x0 < 0 < x1
    visible = out[100:180, 0:34]
    assert not np.array_equal(visible, image[100:180, 0:34])
    assert np.array_equal(out[:, 60:], image[:, 60:])  # nothing painted beyond the grid
    gone = lock()(image, one_face([-200, 100, -120, 180]))  # wholly outside: nothing to do
    assert np.array_equal(gone, image)


def test_cells_outside_the_frame_take_the_edge_colour():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 0] = 200
    cells = sample_cells(image, (-8, 0, 8, 8), 1, 2)
    assert cells[0, 0] == pytest.approx([200, 200, 200])  # all replicated from column 0
    assert cells[0, 1] == pytest.approx([25, 25, 25])  # 1 of 8 columns is the bright edge


def test_grown_region_rounds_outward_and_may_leave_the_frame():
    assert grown_region(np.array([10.5, 10.5, 50.2, 50.2]), 0.25) == (0, 0, 61, 61)
    assert grown_region(np.array([-10, 0, 30, 40]), 0.0) == (-10, 0, 30, 40)


def test_the_adversarial_mode_holds_its_delta_too():
    locked = lock("adversarial-identity", hold_frames=30)
    bare = CellProtector(ProtectConfig(mode="mosaic"))
    outs = []
    for i in range(8):
        dx, dy = jitter(i)
        faces = one_face([120 + dx, 80 + dy, 184 + dx, 160 + dy])
        outs.append(locked(scene(i), faces)[80:160, 120:184])
    assert all(np.array_equal(o, outs[0]) for o in outs)
    plain = bare(scene(0), one_face([120, 80, 184, 160]))[80:160, 120:184]
    assert np.abs(outs[0].astype(int) - plain.astype(int)).mean() > 1  # δ is there


def test_reset_forgets_every_track():
    locked = lock()
    locked(scene(0), one_face([100, 60, 164, 140]))
    locked.reset()
    assert locked.geometry(5) is None


def test_frame_lock_samples_every_frame():
    cfg = ProtectConfig(mode="mosaic", lock="frame")
    assert not isinstance(build_video_protector(cfg), TrackLock)
    assert not isinstance(build_video_protector(ProtectConfig(mode="blur")), TrackLock)


class _Jittery:
    """A detector that finds one face whose box jitters by sub-cell amounts."""

    def detect(self, image, index):
        dx, dy = jitter(index)
        return Faces.from_boxes([[120 + dx, 80 + dy, 184 + dx, 160 + dy]])

    def close(self):
        pass


def test_the_default_processor_locks_tracked_faces():
    """The default config (tracker + lock): a still face whose detections jitter keeps one
    grid, and its picture changes from frame to frame a fraction of what a fresh mosaic's
    does (the colours are faded in)."""
    proc = FrameProcessor(Config(), detector=_Jittery())
    fresh = CellProtector(Config().protect)
    outs, plain, rects = [], [], set()
    for i in range(12):
        frame = proc.analyze(Frame.numbered(i, scene(i)))
        outs.append(proc.protect(frame).image[90:150, 130:174].astype(np.float32))
        plain.append(fresh(scene(i), frame.faces)[90:150, 130:174].astype(np.float32))
        rects.add(proc.protector.geometry(int(frame.faces.track_id[0])))
    assert len(rects) == 1
    step = lambda seq: np.mean([np.abs(b - a).mean()  # noqa: E731
                                for a, b in zip(seq[4:], seq[5:])])
    assert step(outs) < 0.35 * step(plain)
