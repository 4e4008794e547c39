import numpy as np
import pytest

import streamguard
from streamguard.config import load_config
from media import detail_similarity, load_rgb


def test_anonymize_frame_protects_every_face_in_a_photo():
    img = load_rgb("multi_face.jpg")
    with streamguard.Anonymizer() as anon:
        out = anon(img)
        faces = anon.last_faces
    assert len(faces) >= 4
    assert out.shape == img.shape and not np.shares_memory(out, img)
    for x0, y0, x1, y1 in faces.xyxy.astype(int):
        assert detail_similarity(img[y0:y1, x0:x1], out[y0:y1, x0:x1]) < 0.45


def test_bgr_input_for_opencv_users():
    rgb = load_rgb("single_face.jpg")
    out_rgb = streamguard.anonymize_frame(rgb)
    out_bgr = streamguard.anonymize_frame(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)
    assert np.array_equal(out_bgr[..., ::-1], out_rgb)


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        streamguard.anonymize_frame(np.zeros((10, 10), np.float32))


def test_library_fails_closed_too():
    class Broken:
        def detect(self, image, index):
            raise RuntimeError("no model")

        def close(self):
            """Nothing to release."""

    img = load_rgb("single_face.jpg")
    with streamguard.Anonymizer(detector=Broken()) as anon:
        out = anon(img)
        assert anon.failed_closed == 1
    assert detail_similarity(img, out) < 0.2
    drop = load_config(None, ["protect.fail_closed=drop"])
    with streamguard.Anonymizer(drop, detector=Broken()) as anon:
        assert anon(img) is None
