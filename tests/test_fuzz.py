"""Fuzzed inputs: every mutant gets a documented exit within a time bound, no traceback, no
partial file, and no face left in what is written. A small seeded budget here;
`python benchmarks/fuzz.py --runs 300` runs the long campaign."""

from __future__ import annotations

import pytest

from fuzzing import MUTATIONS, SUFFIX, check_mutant, mutate
from media import Sprite, write_clip

BUDGET = [(kind, 1) for kind in MUTATIONS]  # one mutant of each kind; more in the benchmark
# every failure the 300-run campaign found, kept: a broken moov that hides the audio's codec
# (exit 8 'cannot copy audio stream', the output's fault, where the input is damaged: 6)
BUDGET += [("moov", 45)]


@pytest.fixture(scope="module")
def seed_clip(crops, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return write_clip(folder / "seed.mp4", [Sprite(crops[0], 110, (120, 60), (2, 1))],
                      width=640, height=360, n_frames=45, preset="veryfast").path  # B-frames


@pytest.fixture(scope="module")
def face_finder():
    from streamguard.detect.mediapipe import BlazeFace

    model = BlazeFace("full_range", 0.5)
    yield model
    model.close()


def test_the_checker_sees_a_bare_face(seed_clip, face_finder):
    """The check below could not fail if it saw no face, or called a bare one protected:
    the input against itself is all bare."""
    from fuzzing import faces_in_output
    from media import PROTECTED

    found, compared = faces_in_output(seed_clip, seed_clip, face_finder)
    assert compared == 45 and len(found) > 30 and all(kept > PROTECTED for *_, kept in found)


@pytest.mark.parametrize("kind, seed", BUDGET)
def test_a_mutant_is_handled_as_documented(seed_clip, face_finder, tmp_path, kind, seed):
    mutant = tmp_path / f"{kind}-{seed}{SUFFIX.get(kind, '.mp4')}"
    mutate(seed_clip, mutant, kind, seed)
    out = tmp_path / "out"
    out.mkdir()
    check_mutant(mutant, out, face_finder)
