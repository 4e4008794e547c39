import numpy as np
import pytest

from streamguard.frames import Faces


def test_faces_validate_shapes_and_name_both():
    with pytest.raises(ValueError, match=r"xyxy \(2, 4\), score \(3,\)"):
        Faces(np.zeros((2, 4)), np.zeros(3), np.zeros(2))


def test_faces_are_immutable():
    faces = Faces.from_boxes([[0, 0, 10, 10]])
    with pytest.raises(ValueError):
        faces.xyxy[0, 0] = 5
    with pytest.raises(AttributeError):
        faces.xyxy = np.zeros((1, 4))


def test_faces_reject_nan():
    with pytest.raises(ValueError, match="NaN"):
        Faces.from_boxes([[0, 0, np.nan, 10]])


def test_empty_indexing_and_concat():
    faces = Faces.concat([Faces.empty(), Faces.from_boxes([[0, 0, 4, 4], [1, 1, 5, 5]], [0.9, 0.2])])
    assert len(faces) == 2
    assert len(faces[faces.score > 0.5]) == 1
    assert len(Faces.concat([])) == 0
