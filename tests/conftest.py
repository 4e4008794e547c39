import os
from pathlib import Path

import pytest

# Same cache as the Makefile, so `pytest` alone finds what `make setup` fetched.
os.environ.setdefault("STREAMGUARD_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "streamguard"))

from media import Sprite, face_crops, write_clip  # noqa: E402


@pytest.fixture(scope="session")
def crops():
    return face_crops()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


def standard_sprites(crops, width=1280, height=720):
    """Faces of 40, 80 and 160 px, moving; one touching the left edge, one the bottom edge,
    one walking out through the right edge."""
    return [
        Sprite(crops[0], 160, (200, 150), (6, 1)),
        Sprite(crops[1], 80, (width * 0.55, 100), (-3, 4)),
        Sprite(crops[2], 40, (width * 0.78, height * 0.7), (2, -1)),
        Sprite(crops[3], 80, (-12, height * 0.53), (3, 0)),  # face touches the left edge
        Sprite(crops[0], 48, (width * 0.4, height - 56), (1, 0)),  # face touches the bottom
        Sprite(crops[1], 80, (width - 150, height * 0.2), (5, 0)),  # leaves through the right
    ]


@pytest.fixture(scope="session")
def synthetic_clip(crops, clip_dir):
    """720p30 H.264 with audio: five faces of 40-160 px, moving, two at frame edges."""
    return write_clip(clip_dir / "faces720.mp4", standard_sprites(crops), n_frames=45,
                      metadata={"title": "streamguard test", "creation_time": "2024-05-01T10:00:00.000000Z"})


@pytest.fixture(scope="session")
def vfr_clip(crops, clip_dir):
    """Variable frame rate (pts steps 20-67 ms) with audio, in Matroska."""
    return write_clip(clip_dir / "faces_vfr.mkv", standard_sprites(crops, 960, 540)[:3],
                      width=960, height=540, n_frames=40, vfr=True)
