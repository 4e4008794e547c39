import numpy as np
import pytest

from streamguard.config import DetectConfig
from streamguard.detect.base import (
    TiledDetector, available_detectors, box_iou, create_detector, nms, register_detector, tile_grid,
)
from streamguard.errors import ConfigError
from media import background, load_rgb, paste


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (640, 360), (3840, 2160)])
def test_tiles_cover_the_frame_overlap_and_respect_the_size_limit(size):
    w, h = size
    grid = tile_grid(w, h, 480, 0.25)
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in grid:
        assert x1 - x0 <= 480 + 1 and y1 - y0 <= 480 + 1
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # a 40 px face anywhere lies wholly inside at least one tile
    for x in range(0, w - 40, 37):
        assert any(x0 <= x and x + 40 <= x1 for x0, _, x1, _ in grid)


def test_small_frames_need_no_tiles():
    assert tile_grid(400, 300, 480, 0.25) == []


def test_round_robin_visits_every_tile_within_tile_every_frames():
    cfg = DetectConfig(tile_every=5)
    det = TiledDetector(lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)),
                        None, cfg)
    grid = tile_grid(1920, 1080, cfg.tile_max_side, cfg.tile_overlap)
    for start in range(7):
        seen = set()
        for i in range(start, start + 5):
            seen.update(det.tiles_for(1920, 1080, i))
        assert seen == set(grid)


def test_nms_merges_duplicates_from_tiles_and_keeps_distinct_faces():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(xyxy, np.array([0.6, 0.9, 0.5], np.float32), 0.3)
    assert keep.tolist() == [1, 2]
    assert box_iou(xyxy[:1], xyxy[:1])[0, 0] == pytest.approx(1.0)


def test_registry_rejects_duplicates_and_unknown_names():
    assert "mediapipe" in available_detectors()
    with pytest.raises(ValueError, match="already registered"):
        register_detector("mediapipe")(lambda cfg: None)
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        create_detector(DetectConfig(detector="nope"))


def test_every_registered_detector_finds_the_faces_in_a_photo():
    img = load_rgb("multi_face.jpg")
    for name in available_detectors():
        det = create_detector(DetectConfig(detector=name))
        try:
            faces = det.detect(img, 0)
        finally:
            det.close()
        assert len(faces) >= 4, name  # the photo shows five people


@pytest.mark.parametrize("frame_size", [(1280, 720), (1920, 1080)])
def test_tiles_find_40px_faces_the_full_frame_pass_misses(crops, frame_size):
    w, h = frame_size
    det = create_detector(DetectConfig(tile_every=1))
    found_tiled = found_full = 0
    try:
        for i, crop in enumerate(crops):
            frame = background(w, h, seed=i)
            x, y = 100 + 211 * i, h // 2 - 40 + 17 * i
            box = np.array([[x, y, x + 52, y + 52]], np.float32)  # 40 px face, 52 px crop
            paste(frame, crop, tuple(int(v) for v in box[0]))
            tiled = det.detect(frame, 0)
            full = det._full_frame(frame)[0]
            found_tiled += bool(len(tiled) and box_iou(box, tiled.xyxy).max() > 0.1)
            found_full += bool(len(full) and box_iou(box, full).max() > 0.1)
    finally:
        det.close()
    assert found_tiled >= len(crops) - 1
    assert found_full < found_tiled
