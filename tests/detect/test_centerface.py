"""CenterFace, the night model: it finds real faces where BlazeFace does, and it loads from a
cache that may be read-only."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from streamguard.assets import asset_path
from streamguard.detect import centerface
from streamguard.detect.blazeface import LiteBlazeFace
from streamguard.detect.centerface import CenterFace
from streamguard.detect.geometry import box_iou


def _photo(name: str, side: int = 640) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(asset_path(name))), cv2.COLOR_BGR2RGB)
    k = side / max(image.shape[:2])
    return cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["obama.jpg", "multi_face.jpg"])
def test_centerface_boxes_hold_the_faces_blazeface_finds(name):
    """Each face BlazeFace finds in a registry photo, CenterFace finds too, and its (widened)
    box holds most of BlazeFace's box, the size the protection margin was set for (0.82-1.0
    of it on these photos)."""
    image = _photo(name)
    blaze, _, _ = LiteBlazeFace("full_range", 0.5)(image)
    found, score = CenterFace(0.45, side=640)(image)
    assert len(blaze) >= 1 and len(found) >= len(blaze)
    for box in blaze:
        best = found[box_iou(box[None], found)[0].argmax()]
        x0, y0 = np.maximum(box[:2], best[:2])
        x1, y1 = np.minimum(box[2:], best[2:])
        held = max(x1 - x0, 0) * max(y1 - y0, 0) / ((box[2] - box[0]) * (box[3] - box[1]))
        assert held > 0.75, (box, best)
    assert score.min() >= 0.45


def test_centerface_loads_from_a_cache_it_cannot_write(tmp_path, monkeypatch):
    """The model with free input sizes is made once and kept in the cache; where the cache
    cannot be written, it is made in memory and the detector still works."""
    photo = _photo("obama.jpg")
    shutil.copy(asset_path("centerface.onnx"), tmp_path / "centerface.onnx")
    monkeypatch.setenv("STREAMGUARD_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise PermissionError("read-only cache")

    with monkeypatch.context() as m:
        m.setattr(centerface.os, "replace", refuse)
        model = CenterFace(0.45, side=640)
    assert not (tmp_path / centerface.FREE_NAME).exists()
    assert len(model(photo)[0]) == 1
    CenterFace(0.45)  # writable again: made and kept
    assert (tmp_path / centerface.FREE_NAME).is_file()
