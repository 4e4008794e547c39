import numpy as np
import pytest

from streamguard.config import DetectConfig
from streamguard.detect import available_detectors, create_detector, register_detector
from streamguard.detect.base import TiledDetector
from streamguard.detect.windows import window_boxes
from streamguard.detect.geometry import (
    box_iou, drop_parts, nms, padded_crop, tile_grid, tile_pyramid,
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


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (2560, 1440), (3840, 2160),
                                  (720, 1280)])
def test_every_face_the_full_frame_pass_can_miss_lies_whole_in_a_tile_that_sees_it(size):
    """A face on a tile seam is found by no tile; if it is also under what the full-frame
    pass sees, it stays bare (a 140 px face at 1080p was, for 90 frames)."""
    w, h = size
    share = TiledDetector.FULL_FRAME_MIN_FACE
    tiles = tile_pyramid(w, h, 480, 0.25, share)
    assert all(max(x1 - x0, y1 - y0) <= 2 * 480 * 2 for x0, y0, x1, y1 in tiles)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        f = rng.uniform(40, share * max(w, h))
        x, y = rng.uniform(0, w - f), rng.uniform(0, h - f)
        assert any(x0 <= x and y0 <= y and x + f <= x1 and y + f <= y1
                   and share * max(x1 - x0, y1 - y0) <= max(f, 480 * share)
                   for x0, y0, x1, y1 in tiles), (f, x, y)


def test_small_frames_need_no_tiles():
    assert tile_grid(400, 300, 480, 0.25) == []


def test_round_robin_visits_every_tile_within_tile_every_frames():
    cfg = DetectConfig(tile_every=5, edge_padding=0.0)
    det = TiledDetector(lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)),
                        None, cfg)
    grid = tile_pyramid(1920, 1080, cfg.tile_max_side, cfg.tile_overlap,
                        TiledDetector.FULL_FRAME_MIN_FACE)
    for start in range(7):
        seen = set()
        for i in range(start, start + 5):
            seen.update(det.tiles_for(1920, 1080, i))
        assert seen == set(grid)


def test_border_tiles_reach_past_the_frame_and_inner_edges_stay():
    cfg = DetectConfig(tile_every=1, edge_padding=0.25)
    det = TiledDetector(None, None, cfg)
    plain = tile_pyramid(1280, 720, cfg.tile_max_side, cfg.tile_overlap,
                         TiledDetector.FULL_FRAME_MIN_FACE)
    padded = det.tiles_for(1280, 720, 0)
    assert len(padded) == len(plain)
    for (a0, b0, a1, b1), (x0, y0, x1, y1) in zip(plain, padded):
        assert (x0 < 0) == (a0 == 0) and (y0 < 0) == (b0 == 0)
        assert (x1 > 1280) == (a1 == 1280) and (y1 > 720) == (b1 == 720)
        assert (x0 == a0 or a0 == 0) and (x1 == a1 or a1 == 1280)


def test_a_padded_crop_mirrors_the_frame_past_its_edge():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crop = padded_crop(image, -3, 0, 5, 6)
    assert crop.shape == (6, 8, 3)
    assert (crop[:, 3:] == image[:, :5]).all()
    assert (crop[:, 2] == image[:, 1]).all() and (crop[:, 0] == image[:, 3]).all()
    assert padded_crop(image, -20, -20, 30, 30).shape == (50, 50, 3)  # thin frames too


def _paste_cut(frame, crop, x0, y0, side):
    import cv2

    face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    h, w = frame.shape[:2]
    a0, b0, a1, b1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    frame[b0:b1, a0:a1] = face[b0 - y0:b1 - y0, a0 - x0:a1 - x0]


@pytest.mark.parametrize("edge, inside", [("left", 70), ("right", 70), ("bottom", 70),
                                          ("top", 110)])
def test_a_face_half_cut_by_any_edge_is_found(edge, inside):
    """Regression: BlazeFace misses a face cut by the frame's edge; 30-50 % inside, such
    faces were left bare (the tiles stopped at the edge). Half a face with its eyes is found
    on its own; the mouth-and-chin half below the top edge only from ~70 % inside (the
    tracker and the look-back cover it further out: tests/test_recall.py)."""
    from media import face_crops

    crop = face_crops()[0]
    frame = background(1280, 720, seed=5)
    side = 150
    x0, y0 = {"left": (inside - side, 300), "right": (1280 - inside, 300),
              "top": (600, inside - side), "bottom": (600, 720 - inside)}[edge]
    _paste_cut(frame, crop, x0, y0, side)
    det = create_detector(DetectConfig(tile_every=1))
    try:
        found = det.detect(frame, 0)
    finally:
        det.close()
    visible = [max(x0, 0), max(y0, 0), min(x0 + side, 1280), min(y0 + side, 720)]
    hits = [b for b in found.xyxy if box_iou(b[None], np.array([visible], np.float32))[0, 0] > 0.2]
    assert hits, found.xyxy


def test_parts_of_a_face_found_alone_are_dropped_and_neighbours_kept():
    xyxy = np.array([[0, 0, 500, 500], [100, 150, 180, 210], [480, 0, 700, 220],
                     [600, 600, 660, 660]], np.float32)
    assert drop_parts(xyxy).tolist() == [0, 2, 3]


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


@pytest.mark.parametrize("runtime", ["litert", "torch"])
def test_every_registered_detector_finds_the_faces_in_a_photo(runtime):
    img = load_rgb("multi_face.jpg")
    for name in available_detectors():
        det = create_detector(DetectConfig(detector=name, runtime=runtime))
        try:
            faces = det.detect(img, 0)
        finally:
            det.close()
        assert len(faces) >= 4, name  # the photo shows five people


@pytest.mark.parametrize("runtime", ["litert", "torch"])
@pytest.mark.parametrize("frame_size", [(1280, 720), (1920, 1080)])
def test_tiles_find_40px_faces_the_full_frame_pass_misses(crops, frame_size, runtime):
    w, h = frame_size
    det = create_detector(DetectConfig(tile_every=1, runtime=runtime))
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


def test_a_track_window_confirms_its_own_face_only():
    """Windows look closer at where a track expects its face; what else they see (texture up
    close, a box twice too large) must not become a face, or false tracks breed themselves."""
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    # expected box 40 px at (600, 300): window side 120 px, alone on its canvas
    expected = np.array([[600, 300, 640, 340]], np.float32)
    side = TiledDetector.WINDOW_CANVAS

    def tiles(canvas):
        assert canvas.shape[:2] == (side, side)
        s = side / 120  # window px -> canvas px; the window starts at (560, 260)
        return (np.array([[(600 - 560) * s, (302 - 260) * s, (641 - 560) * s, (342 - 260) * s],
                          [5, 5, 25, 25],  # texture in a corner of the window
                          [0, 0, side - 1, side - 1]], np.float32),  # the whole window
                np.array([0.9, 0.95, 0.99], np.float32))

    det = TiledDetector(lambda im: empty, tiles, DetectConfig(turned_every=0, tile_every=0))
    found = det.detect(np.zeros((720, 1280, 3), np.uint8), 0, around=expected)
    assert len(found) == 1
    assert np.allclose(found.xyxy[0], [600, 302, 641, 342], atol=1.5)


def test_packed_windows_map_each_face_back_to_its_own_track():
    """Seven small tracks: four share one 2 x 2 picture, three the next; what the model finds
    in each cell goes back to that cell's track, in frame pixels."""
    expected = np.array([[100 + 150 * k, 200 + 40 * k, 140 + 150 * k, 240 + 40 * k]
                         for k in range(7)], np.float32)  # 40 px faces: 120 px windows
    calls = []

    def tiles(canvas):
        calls.append(canvas.shape)
        cell = canvas.shape[0] / 2
        # in each cell, the face where its window has it (the middle third)
        boxes = [[c * cell + cell / 3, r * cell + cell / 3, c * cell + 2 * cell / 3,
                  r * cell + 2 * cell / 3] for r, c in (divmod(k, 2) for k in range(4))]
        return np.array(boxes, np.float32), np.full(4, 0.9, np.float32)

    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    det = TiledDetector(lambda im: empty, tiles,
                        DetectConfig(turned_every=0, tile_every=0, max_windows=0))
    found = det.detect(np.zeros((1080, 1920, 3), np.uint8), 0, around=expected)
    assert len(calls) == 2
    assert len(found) == 7  # the second picture's fourth cell is empty: nothing from it
    assert box_iou(expected, found.xyxy).max(axis=1).min() > 0.85


def test_on_a_dim_frame_a_face_found_turned_is_looked_at_alone_and_twice_as_large():
    """Night and infrared: a turned face seen at a quarter of a shared picture was lost (a
    110 px infrared face turned 135 degrees, found on 1 of 40 frames). On a dim frame its
    window fills a picture of its own; on a lit one it shares as before."""
    expected = np.array([[100 + 200 * k, 300, 140 + 200 * k, 340] for k in range(4)],
                        np.float32)
    seen = []

    def tiles(canvas):
        seen.append(canvas.copy())
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    for level, (lo, hi) in (("dim", (60, 100)), ("lit", (0, 250))):
        frame = np.random.default_rng(0).integers(lo, hi, (720, 1280, 3), dtype=np.uint8)
        frame[300:340, 100:140] = 255  # the face found turned: the first track
        det = TiledDetector(lambda im: empty, tiles,
                            DetectConfig(turned_every=0, tile_every=0, max_windows=0))
        det._turns.learn(expected[:1], np.array([1]), frame=0, score=np.array([0.9]))
        seen.clear()
        det.detect(frame, 0, around=expected)
        side = TiledDetector.WINDOW_CANVAS
        # the bright face's width in the picture it was shown in
        shown = max(int((c[..., 0] == 255).any(axis=0).sum()) for c in seen)
        if level == "dim":
            assert len(seen) == 2  # the turned face alone, the other three 2 x 2
            assert abs(shown - side / 3) <= 2  # a third of the whole picture
        else:
            assert len(seen) == 1  # all four share one picture
            assert abs(shown - side / 6) <= 2


def test_more_windows_than_one_picture_holds_take_turns():
    """Seven small tracks, four windows a frame: one detector input per frame, every track
    looked at within two frames."""
    expected = np.array([[100 + 150 * k, 200 + 40 * k, 140 + 150 * k, 240 + 40 * k]
                         for k in range(7)], np.float32)
    seen: list[set[int]] = []

    def tiles(canvas):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    det = TiledDetector(lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)),
                        tiles, DetectConfig(turned_every=0, tile_every=0, max_windows=4))
    for index in range(4):
        windows = det._take_turns(det.windows_for(1920, 1080, expected))
        assert len(windows) == 4
        seen.append({int(np.flatnonzero((expected == box).all(axis=1))[0])
                     for _, box, _ in windows})
    for a, b in zip(seen, seen[1:]):
        assert a | b == set(range(7))


def test_no_window_for_a_small_track_the_full_frame_pass_found():
    expected = np.array([[600, 300, 660, 360]], np.float32)
    calls = []

    def tiles(canvas):
        calls.append(canvas.shape)
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    full = (np.array([[602, 301, 661, 362]], np.float32), np.array([0.9], np.float32))
    det = TiledDetector(lambda im: full, tiles, DetectConfig(turned_every=0, tile_every=0))
    assert len(det.detect(np.zeros((720, 1280, 3), np.uint8), 0, around=expected)) == 1
    assert calls == []
    # not found by the full-frame pass: the window looks
    det = TiledDetector(lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)),
                        tiles, DetectConfig(turned_every=0, tile_every=0))
    det.detect(np.zeros((720, 1280, 3), np.uint8), 0, around=expected)
    assert len(calls) == 1


def _bright_blobs(calls: list):
    """A stand-in model that finds one 'face': the box of the pure-white pixels it is shown."""

    def model(image):
        calls.append(image.shape)
        ys, xs = np.nonzero((np.asarray(image) == 255).all(axis=2))
        if not len(xs):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return (np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                np.array([0.9], np.float32))

    return model


def _still_scene(seed: int = 0) -> np.ndarray:
    """A fixed camera's picture: texture that never reaches white."""
    return np.random.default_rng(seed).integers(0, 200, (720, 1280, 3), dtype=np.uint8)


def _codec_noise(image: np.ndarray, rng) -> np.ndarray:
    """+-2 levels on the texture (the white face stays white)."""
    noisy = np.clip(image.astype(np.int16) + rng.integers(-2, 3, image.shape), 0, 254)
    return np.where(image == 255, 255, noisy).astype(np.uint8)


def test_a_still_tile_is_looked_at_again_only_after_a_bounded_number_of_turns():
    """A still scene with a face in it: after the first look, each tile's next two turns cost
    no model call and find exactly the same; the third turn looks again. Noise the size of
    H.264's on a still background does not count as a change."""
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    calls: list = []
    # (no mirrored border: border tiles would alternate with their unmirrored selves)
    det = TiledDetector(nothing, _bright_blobs(calls),
                        DetectConfig(turned_every=0, tile_every=1, still_tiles=2, edge_padding=0))
    scene = _still_scene()
    scene[100:140, 150:190] = 255  # a 40 px face only the tiles see
    rng = np.random.default_rng(1)
    tiles = len(det.tiles_for(1280, 720, 0))
    found = []
    for index in range(7):
        calls.clear()
        found.append(det.detect(_codec_noise(scene, rng) if index else scene, index))
        assert len(calls) == (tiles if index % 3 == 0 else 0), index
    for faces in found:
        assert len(faces) == 1
        np.testing.assert_array_equal(faces.xyxy, found[0].xyxy)
    # 0 = every turn looks
    calls.clear()
    det = TiledDetector(nothing, _bright_blobs(calls),
                        DetectConfig(turned_every=0, tile_every=1, still_tiles=0))
    for index in range(3):
        det.detect(scene, index)
    # the first frame is looked at in every view (border tiles also as they are)
    assert len(calls) == len(det.first_views(1280, 720)) + 2 * tiles


def test_the_first_frame_is_looked_at_in_every_view_at_once():
    """A face there from the first frame has no look-back before it: frame 0 is looked at in
    every tile (border tiles also as they are) and the whole frame turned, so a small face
    in the corner the tiles' round reaches last is found on frame 0, not five frames later.
    The frames after it take their turns as before."""
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    calls: list = []
    det = TiledDetector(nothing, _bright_blobs(calls),
                        DetectConfig(turned_every=15, tile_every=5, still_tiles=0))
    scene = _still_scene()
    scene[680:716, 1240:1276] = 255  # a 36 px face in the bottom-right corner
    found = det.detect(scene, 0)
    assert len(found) == 1 and box_iou(found.xyxy, np.array([[1240, 680, 1276, 716]],
                                                            np.float32))[0, 0] > 0.5
    grid = det._grid_of(1280, 720)
    assert len(calls) >= len(grid) + 3  # every tile, the whole frame turned
    calls.clear()
    det.detect(scene, 1)
    assert len(calls) == len(det.tiles_for(1280, 720, 1)) + len(det.turned_for(1280, 720, 1))


def test_a_new_segment_starts_over_with_a_first_look_and_no_turned_faces():
    """A worker that protects one Ray segment after another keeps its detector: each segment
    starts with frame 0 again, so the faces found turned in the last one (remembered by
    frame number) would turn the new segment's windows, and its first frame would get only
    its share of tiles. `FrameProcessor.reset_tracking` starts the detector over."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    calls: list = []
    det = TiledDetector(nothing, _bright_blobs(calls),
                        DetectConfig(turned_every=15, tile_every=5, still_tiles=0))
    scene = _still_scene()
    for index in range(40):
        det.detect(scene, index)
    face = np.array([[500, 200, 540, 240]], np.float32)
    det._turns.learn(face, np.array([2]), frame=39, score=np.array([0.9]))
    assert det.windows_for(1280, 720, face)[0][2] == 2
    processor = FrameProcessor(load_config(None, []), detector=det)
    processor.reset_tracking()
    assert [w[2] for w in det.windows_for(1280, 720, face)] == [0]  # forgotten: not turned
    calls.clear()
    det.detect(scene, 0)
    assert len(calls) == len(det.first_views(1280, 720))


def test_a_face_appearing_in_a_still_tile_is_found_on_that_tile_s_next_turn():
    """Tiles take turns (tile_every 5) over a still scene; a small face steps into view between
    two turns of its tile: that turn looks (the picture changed) and finds it."""
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    calls: list = []
    det = TiledDetector(nothing, _bright_blobs(calls),
                        DetectConfig(turned_every=0, tile_every=5, still_tiles=10))
    scene = _still_scene()
    for index in range(10):  # every tile looked at, then skipped once
        det.detect(scene, index)
    with_face = scene.copy()
    with_face[500:530, 1100:1130] = 255  # 30 px, in the last row of tiles
    hits = []
    for index in range(10, 15):
        faces = det.detect(with_face, index)
        hits += [index] * len(faces)
    assert hits, "the face was never found"
    tile_turn = next(index for index in range(10, 15) if any(
        t[0] <= 1100 and 1130 <= t[2] and t[1] <= 500 and 530 <= t[3]
        for t in det.tiles_for(1280, 720, index)))
    assert hits[0] == tile_turn


def test_the_full_frame_pass_skips_a_still_frame_a_bounded_number_of_times_and_sees_a_change():
    """No tiles: over a still scene the full-frame model runs on every third frame (two skips
    in a row at most) and the faces found stay; a large face stepping in makes it run on that
    very frame."""
    calls: list = []
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    det = TiledDetector(_bright_blobs(calls), nothing,
                        DetectConfig(turned_every=0, tile_every=0, still_tiles=2))
    scene = _still_scene()
    scene[100:300, 150:350] = 255
    rng = np.random.default_rng(2)
    ran = []
    for index in range(7):
        calls.clear()
        faces = det.detect(_codec_noise(scene, rng), index)
        ran.append(len(calls))
        assert len(faces) == 1 and np.allclose(faces.xyxy[0], [150, 100, 350, 300])
    assert ran == [1, 0, 0, 1, 0, 0, 1]
    scene[400:600, 800:1000] = 255  # a second face steps in, on a frame that would be skipped
    calls.clear()
    faces = det.detect(_codec_noise(scene, rng), 7)
    assert len(calls) == 1 and len(faces) == 1  # the stand-in boxes all white pixels as one
    assert faces.xyxy[0, 2] == 1000


@pytest.mark.parametrize("quarter", [0, 1, 2, 3])
def test_a_box_found_in_a_turned_picture_maps_back_onto_the_picture(quarter):
    from streamguard.detect.geometry import turn_image, unturn_boxes

    image = np.zeros((90, 160, 3), np.uint8)
    image[20:50, 100:130] = 255  # a 30 x 30 square, x 100-130, y 20-50
    image[20:30, 100:110] = 128  # a darker corner, so a wrong turn cannot map onto it
    turned = turn_image(image, quarter)
    ys, xs = np.nonzero(turned[..., 0])
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    assert unturn_boxes(found, quarter, 160, 90).tolist() == [[100, 20, 130, 50]]
    # the dark corner, found turned, comes back where it was
    ys, xs = np.nonzero(turned[..., 0] == 128)
    corner = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    assert unturn_boxes(corner, quarter, 160, 90).tolist() == [[100, 20, 110, 30]]


def test_every_turned_view_is_looked_at_within_turned_every_frames():
    cfg = DetectConfig(turned_every=15)
    det = TiledDetector(None, None, cfg)
    tiles = det._grid_of(1280, 720)
    per_frame = [det.turned_for(1280, 720, i) for i in range(15)]
    seen = [view for views in per_frame for view in views]
    assert sorted(seen, key=repr) == sorted(
        [(q, t) for t in [None, *tiles] for q in (1, 2, 3)], key=repr)
    assert max(map(len, per_frame)) - min(map(len, per_frame)) <= 1  # an even cost
    assert TiledDetector(None, None, DetectConfig(turned_every=0)).turned_for(1280, 720, 3) == []


@pytest.mark.parametrize("span", [2, 3, 4])
def test_looks_at_every_nth_frame_take_the_turned_views_of_the_frames_between(span):
    """The frame budget (or detect.every) looks at every span-th frame: each look takes the
    turned views of the frames it stands for, so a round still takes turned_every frames,
    which the look-back covers. One frame's views per look, a round took span x as long: a
    face turned 135 degrees at the start of a live stream was found after the look-back had
    let 9 frames go bare."""
    det = TiledDetector(None, None, DetectConfig(turned_every=20))
    every_view = set(det._turned_views(1280, 720))
    looks = range(0, 20, span)  # the looks within 20 frames, each standing for span frames
    seen = {view for clock in looks for view in det.turned_for(1280, 720, clock, span)}
    assert seen == every_view
    one_each = {view for clock in looks for view in det.turned_for(1280, 720, clock)}
    assert len(one_each) < len(every_view)


def test_a_dark_or_flat_picture_is_stretched_for_the_models_and_daylight_is_not():
    from streamguard.detect.views import brightened

    rng = np.random.default_rng(0)
    day = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert brightened(day) is day
    night = (day * 0.3).astype(np.uint8)
    lit = brightened(night)
    assert lit is not night and lit.shape == night.shape
    spread = np.percentile(lit[..., 1], 99) - np.percentile(lit[..., 1], 1)
    assert spread > 150
    assert night.max() <= 77  # the frame itself is untouched


def test_an_infrared_night_picture_is_not_stretched():
    """Grey, low-contrast, noisy: stretching it hid faces from the models (the infrared
    recall clips: 29 -> 40 face-frames found at 1080p without it). A dark colour picture with
    the same levels is still stretched."""
    from streamguard.detect.views import brightened

    rng = np.random.default_rng(0)
    grey = (70 + 0.35 * rng.integers(0, 256, (120, 160))).astype(np.uint8)  # levels 70-159
    grey = np.clip(grey[..., None] + rng.normal(0, 1, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert brightened(grey) is grey
    colour = grey.copy()
    colour[..., 0] = np.clip(colour[..., 0].astype(np.int16) + 12, 0, 255)  # a tinted scene
    assert brightened(colour) is not colour


def test_a_face_found_turned_has_its_window_turned_the_same_way():
    """A track the turned views found has its window cut turned, and what the window finds
    maps back onto the face; a large upright track needs no window."""
    det = TiledDetector(None, None, DetectConfig(tile_every=0, turned_every=0))
    face = np.array([[500, 200, 700, 400]], np.float32)  # large: no window unless turned
    assert det.windows_for(1280, 720, face) == []
    det._turns.learn(face, np.array([1]), frame=0)
    [(window, expected, quarter)] = det.windows_for(1280, 720, face)
    assert quarter == 1 and expected.tolist() == face[0].tolist()
    # a box found in the turned window comes back onto the track's face
    canvases = det._window_canvases(np.zeros((720, 1280, 3), np.uint8), [(window, face[0], 1)])
    side = det.WINDOW_CANVAS
    centre = np.array([[side / 3, side / 3, 2 * side / 3, 2 * side / 3]], np.float32)
    boxes, _, _, quarters = window_boxes(
        [(centre, np.ones(1, np.float32), np.zeros(1, np.float32))], canvases)
    assert quarters.tolist() == [1]
    assert np.allclose(boxes, face, atol=3)
    # found upright again: forgotten, no window
    det._turns.learn(face, np.array([0]), frame=1)
    assert det.windows_for(1280, 720, face) == []


def test_a_dim_frame_is_looked_at_in_smaller_tiles_a_whole_round_at_a_time():
    """Night (levels spanning under 110 of 256) is cut into tiles of at most dim_tile_side
    px, from the start of a round of tiles to its end, so every tile of one grid is looked
    at; light again (past the hysteresis) the next round goes back to the daylight tiles."""
    rng = np.random.default_rng(1)
    day = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    night = (40 + day * 0.25).astype(np.uint8)
    seen: list[tuple[int, int]] = []

    def tiles(image):
        seen.append(image.shape[:2])
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    cfg = DetectConfig(tile_every=5, turned_every=0, still_tiles=0, edge_padding=0,
                       dim_tile_side=384)
    det = TiledDetector(lambda im: empty, tiles, cfg)

    def round_of(pictures, start):
        seen.clear()
        for i, picture in enumerate(pictures):
            det.detect(picture, start + i)
        return list(seen)

    det.detect(day, 0)  # the first frame, looked at in every view at once
    daylight = round_of([day] * 5, 5)
    assert len(daylight) == 8 and max(max(s) for s in daylight) <= 480
    # night falls mid-round: that round keeps its daylight tiles, the next is cut smaller
    mixed = round_of([day, day, night, night, night], 10)
    assert len(mixed) == 8
    dim = round_of([night] * 5, 15)
    assert len(dim) > 8 and max(max(s) for s in dim) <= 384
    assert round_of([day] * 5, 20) == daylight
    off = TiledDetector(lambda im: empty, tiles, cfg.model_copy(update={"dim_tile_side": 0}))
    off.detect(night, 0)
    seen.clear()
    for i in range(5, 10):
        off.detect(night, i)
    assert len(seen) == 8


def _levels_model(image):
    """A stand-in tiles model: a sure find (0.9) where the picture is pure white, an unsure
    one (0.4, as a real model gives from detect.edge_min_score) where it is level 254."""
    boxes, scores = [], []
    for level, score in ((255, 0.9), (254, 0.4)):
        ys, xs = np.nonzero((np.asarray(image) == level).all(axis=2))
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            scores.append(score)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)


def test_an_unsure_find_counts_at_the_frame_edge_only():
    """The models find half faces and faces in corners least surely: a find under
    detect.min_score is taken where its box reaches the frame's edge (a face in the corner),
    nowhere else (a pattern in the middle of the picture); a sure find counts anywhere."""
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    det = TiledDetector(nothing, _levels_model,
                        DetectConfig(turned_every=0, tile_every=1, edge_padding=0,
                                     still_tiles=0, track_windows=False))
    scene = np.full((720, 1280, 3), 100, np.uint8)
    scene[660:720, 1226:1280] = 254  # unsure, in the bottom-right corner
    scene[300:360, 600:660] = 254  # unsure, in the middle
    scene[100:160, 300:360] = 255  # sure, in the middle
    faces = det.detect(scene, 0)
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    assert any(c[0] > 1226 and c[1] > 660 for c in centres)  # the corner's
    assert any(300 < c[0] < 360 and 100 < c[1] < 160 for c in centres)  # the sure one
    assert not any(600 < c[0] < 660 and 300 < c[1] < 360 for c in centres)


class _UpsideModel:
    """A stand-in tiles model for a face lying on its side: a patch bright (254) on the left
    and dark (60) on the right of the frame, which it sees as a face only turned a quarter
    clockwise (bright on top). It scores the face about its threshold, as a real model does
    a small blurred one: unsure (0.47) the first time it sees it, sure (0.9) after."""

    def __init__(self):
        self.sightings = []  # (call, score)
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        image = np.asarray(image)
        bright = np.argwhere((image == 254).all(axis=2))
        dark = np.argwhere((image == 60).all(axis=2))
        if not len(bright) or not len(dark) or bright[:, 0].max() >= dark[:, 0].min():
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        score = 0.47 if not self.sightings else 0.9
        self.sightings.append((self.calls, score))
        (y0, x0), (y1, x1) = np.vstack([bright, dark]).min(0), np.vstack([bright, dark]).max(0)
        return np.array([[x0, y0, x1 + 1, y1 + 1]], np.float32), np.array([score], np.float32)


def test_a_turned_view_unsure_of_a_face_looks_again_on_the_next_frames():
    """A turned view comes round once in turned_every frames: a face its model scores about
    the threshold (small, blurred, dark, lying down) was found a round or two late, after
    the look-back (a blurred 44 px face on its side, bare on frames 0-21). A view that was
    unsure of something where no face was found looks again on the next frames: the face is
    found on the very next one. Its finds count as any view's: the unsure find itself is not
    a face."""
    nothing = lambda im: (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))  # noqa: E731
    model = _UpsideModel()
    det = TiledDetector(nothing, model, DetectConfig(turned_every=20, tile_every=0,
                                                     still_tiles=0, track_windows=False))
    scene = np.full((720, 1280, 3), 100, np.uint8)
    scene[300:360, 600:630] = 254
    scene[300:360, 630:660] = 60
    found, unsure_on = [], []
    for i in range(25):
        seen = len(model.sightings)
        found.append(len(det.detect(scene, i)))
        unsure_on += [i for _, score in model.sightings[seen:] if score < 0.5]
    # the first look turns the whole frame: unsure there, nothing counted on frame 0; the
    # same view looks again on frame 1 and finds it (its turn comes round on frame 20)
    assert unsure_on == [0] and found[0] == 0
    assert found[1] == 1
