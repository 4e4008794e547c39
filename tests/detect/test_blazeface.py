"""BlazeFace on LiteRT: the same faces as MediaPipe's own detector; the full-frame pass run
beside the tiles finds exactly what it finds run before them."""

import numpy as np
import pytest

from streamguard.detect.geometry import box_iou, padded_crop, tile_grid
from streamguard.detect.blazeface import LiteBlazeFace
from streamguard.detect.ssd import SPECS, ssd_anchors, weighted_nms
from streamguard.detect.mediapipe import BlazeFace
from media import load_rgb

PHOTOS = ("obama.jpg", "biden.jpg", "single_face.jpg", "multi_face.jpg")


@pytest.mark.parametrize("model,anchors", [("short_range", 896), ("full_range", 2304)])
def test_anchors_match_the_models_outputs(model, anchors):
    centres = ssd_anchors(SPECS[model])
    assert centres.shape == (anchors, 2)
    assert (centres > 0).all() and (centres < 1).all()
    lite = LiteBlazeFace(model, 0.5)
    try:
        raw = lite._interpreter.get_output_details()
        assert {int(d["shape"][1]) for d in raw} == {anchors}
    finally:
        lite.close()


@pytest.mark.parametrize("model", ["full_range", "short_range"])
def test_it_finds_the_faces_mediapipe_finds_where_mediapipe_finds_them(model):
    lite, reference = LiteBlazeFace(model, 0.5), BlazeFace(model, 0.5)
    faces = BlazeFace("full_range", 0.5)  # where the photos' faces are
    try:
        checked = 0
        for name in PHOTOS:
            img = load_rgb(name)
            ref_xyxy, ref_score = reference(img)
            xyxy, score, roll = lite(img)
            sure = ref_xyxy[ref_score >= 0.7]
            for box in sure:  # every face MediaPipe is sure of, boxed alike
                assert len(xyxy) and box_iou(box[None], xyxy).max() >= 0.7, (name, box)
                checked += 1
            # and nothing confident where MediaPipe sees no face (with this model or the
            # full-range one: the short-range model, on faces too small for it, is sure of
            # a real face here and there that MediaPipe's own resize leaves under 0.5)
            seen = np.concatenate([ref_xyxy, faces(img)[0]])
            for box in xyxy[score >= 0.7]:
                assert len(seen) and box_iou(box[None], seen).max() >= 0.3, (name, box)
        assert checked >= 3  # (the short-range model is sure of fewer: small faces)
    finally:
        lite.close()
        reference.close()
        faces.close()


@pytest.mark.parametrize("model", ["full_range", "short_range"])
def test_a_batch_gives_each_image_what_it_gets_alone(model):
    img = load_rgb("multi_face.jpg")
    h, w = img.shape[:2]
    crops = [padded_crop(img, *t) for t in tile_grid(w, h, max(w, h) // 2, 0.25)]
    crops.append(img)
    lite = LiteBlazeFace(model, 0.5)
    try:
        alone = [lite(c) for c in crops]
        together = lite.batch(crops)
    finally:
        lite.close()
    assert sum(len(a[0]) for a in alone) >= 4
    for (a_xyxy, a_score, a_roll), (b_xyxy, b_score, b_roll) in zip(alone, together):
        np.testing.assert_allclose(a_xyxy, b_xyxy, atol=0.05)
        np.testing.assert_allclose(a_score, b_score, atol=1e-5)


def test_weighted_suppression_averages_overlapping_boxes_and_keeps_apart_ones():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    score = np.array([0.9, 0.6, 0.8], np.float32)
    out, out_score = weighted_nms(xyxy, score, 0.3)
    assert len(out) == 2
    np.testing.assert_allclose(out[0], (xyxy[0] * 0.9 + xyxy[1] * 0.6) / 1.5, atol=1e-5)
    np.testing.assert_allclose(out_score, [0.9, 0.8])
    np.testing.assert_allclose(out[1], xyxy[2])


def test_the_full_frame_pass_beside_the_tiles_finds_exactly_what_it_finds_before_them(
        synthetic_clip):
    """The LiteRT detector runs its full-frame pass on a helper thread while the tiles run:
    frame for frame the same boxes as one after the other, tiles and track windows included."""
    from streamguard.config import DetectConfig
    from streamguard.detect.base import TiledDetector
    from streamguard.detect.blazeface import LiteDetector

    cfg = DetectConfig(tile_every=1)  # 2 tiles a frame: the helper takes a share
    parallel = LiteDetector(cfg)
    serial = TiledDetector(*parallel._models[:2], cfg)
    assert parallel._helper is not None and serial._helper is None
    try:
        around = None
        for index, frame in enumerate(synthetic_clip.frames[:12]):
            a = parallel.detect(frame, index, around=around)
            b = serial.detect(frame, index, around=around)
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.score, b.score)
            around = a.xyxy  # track hints: the windows run too
        assert len(a) >= 3
    finally:
        parallel.close()


def test_the_roll_of_a_tilted_face_comes_from_its_eyes():
    """The roll (degrees, counter-clockwise as seen) that grows a tilted face's box to hold
    it corner to corner: within 15 degrees of the photo's tilt."""
    import cv2

    img = load_rgb("obama.jpg")
    h, w = img.shape[:2]
    lite = LiteBlazeFace("full_range", 0.5)
    try:
        for tilt in (-40, -20, 0, 20, 40):
            turned = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), tilt, 0.7),
                                    (w, h), borderMode=cv2.BORDER_REFLECT)
            _, score, roll = lite(turned)
            assert len(score), tilt
            assert abs(float(roll[np.argmax(score)]) - tilt) < 15, (tilt, roll)
    finally:
        lite.close()


def test_unsure_finds_come_beside_the_sure_ones_which_stay_as_they_were():
    """With a lower threshold for unsure finds (detect.edge_min_score), the model's sure
    finds are exactly those it gives without it, and unsure ones come too: on a dim, blurred
    picture of the registry photos the unsure ones are the faces it was not sure of."""
    import cv2

    plain = LiteBlazeFace("full_range", 0.5)
    both = LiteBlazeFace("full_range", 0.5, low_score=0.2)
    unsure = 0
    try:
        for name in PHOTOS:
            img = load_rgb(name)
            for picture in (img, cv2.GaussianBlur((img * 0.3).astype(np.uint8), (0, 0), 4)):
                xyxy, score, roll = plain(picture)
                b_xyxy, b_score, b_roll = both(picture)
                sure = b_score >= 0.5
                np.testing.assert_array_equal(b_xyxy[sure], xyxy)
                np.testing.assert_array_equal(b_score[sure], score)
                assert (b_score[~sure] >= 0.2).all()
                unsure += int((~sure).sum())
    finally:
        plain.close()
        both.close()
    assert unsure > 0


@pytest.mark.parametrize("height,width", [(720, 1280), (721, 1283), (601, 457), (250, 190),
                                          (1080, 1920)])
def test_the_letterbox_maps_model_pixels_back_onto_the_image(height, width):
    """The model sees the picture halved and area-averaged (odd last rows and columns
    dropped along the way): a bright square found at its place in the model's input maps
    back, through the letterbox's (scale, pad), onto where it is in the picture, within a
    pixel of the model's input."""
    from streamguard.detect.ssd import letterbox

    img = np.zeros((height, width, 3), np.uint8)
    x0, y0 = width // 3, height // 2
    side = max(12, max(height, width) // 8)
    img[y0:y0 + side, x0:x0 + side] = 255
    out = np.empty((192, 192, 3), np.float32)
    scale, px, py = letterbox(img, 192, out)
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5  # float averaging
    ys, xs = np.nonzero(out[..., 0] > 0)  # over half bright: the square
    back = (np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            - [px, py, px, py]) / scale
    assert np.abs(back - [x0, y0, x0 + side, y0 + side]).max() <= 1.0 / scale
