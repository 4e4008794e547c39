"""Recall regressions on short synthetic clips: every visible face protected in every frame.

Each clip is rendered with ground truth (tests/videotruth.py) and run through the real
offline pipeline with magenta protection; a face-frame is protected when magenta covers
>= 95 % of the visible part of its face box. benchmarks/recall.py measures the same on longer
clips, at 720p and 1080p, offline and live.
"""

from __future__ import annotations

import pytest

from streamguard.config import load_config
from streamguard.pipeline import anonymize_file
from videotruth import Scenario, Track, face_sources, score_file, solid_overrides, write_scenario

W, H = 1280, 720


@pytest.fixture(scope="module")
def sources():
    return face_sources()


def _missed(tmp_path, sources, tracks: list[Track], frames: int, min_size: float = 40,
            min_visible: float = 0.3, overrides: list[str] | None = None) -> list[dict]:
    """Face-frames of the target kind (>= min_size px, >= min_visible of the face visible)
    that came out unprotected."""
    clip = tmp_path / "clip.mp4"
    truths = write_scenario(Scenario("t", W, H, frames, tracks), sources, clip)
    cfg = load_config(None, [*solid_overrides(), *(overrides or [])])
    anonymize_file(clip, tmp_path / "out.mp4", cfg)
    tally = score_file(tmp_path / "out.mp4", truths, cfg.protect.margin)
    assert len(tally.records) > 0
    return [r for r in tally.records if r["size"] >= min_size
            and min(r["inside"], r["visible"]) >= min_visible and not r["protected"]]


@pytest.mark.parametrize("edge", ["left", "right", "top", "bottom"])
def test_a_face_cut_by_each_edge_is_protected(tmp_path, sources, edge):
    """Regression: faces 30-70 % inside the frame were left bare (BlazeFace does not find a
    face cut by the edge, and the tiles stopped at it)."""
    px, e = 110, 44
    # the face centre from 40 % to 90 % inside and back
    lo, hi = -0.1 * px, 0.4 * px
    keys = {"left": ((0, lo, 300, px), (e / 2, hi, 300, px), (e, lo, 300, px)),
            "right": ((0, W - lo, 400, px), (e / 2, W - hi, 400, px), (e, W - lo, 400, px)),
            "top": ((0, 640, lo * 1.3, px), (e / 2, 640, hi * 1.3, px), (e, 640, lo * 1.3, px)),
            "bottom": ((0, 500, H - lo * 1.3, px), (e / 2, 500, H - hi * 1.3, px),
                       (e, 500, H - lo * 1.3, px))}[edge]
    assert _missed(tmp_path, sources, [Track(1, keys)], e + 1) == []


def test_a_small_face_turning_between_tile_passes_stays_protected(tmp_path, sources):
    """Regression: a 44 px face (found only by the tiles, every 5th frame) that changed
    direction between two tile passes was bare where the tracker extrapolated it wrongly."""
    keys, x, y = [], 300.0, 200.0
    for k in range(6):  # zig-zag, 7 px per frame, turning every 8 frames
        keys.append((8 * k, x, y, 44))
        x, y = x + 56, y + (56 if k % 2 == 0 else -56)
    assert _missed(tmp_path, sources, [Track(0, tuple(keys))], 41, min_size=32) == []


def test_a_fast_face_entering_is_protected_from_its_first_frames(tmp_path, sources):
    """A 90 px face entering from the left at 24 px per frame."""
    track = Track(2, ((0, -70, 350, 90), (30, -70 + 24 * 30, 350, 90)))
    assert _missed(tmp_path, sources, [track], 31) == []


def test_a_face_partly_covered_by_another_is_protected(tmp_path, sources):
    """A 120 px face passes in front of a 90 px one: the visible part stays covered."""
    behind = Track(3, ((0, 640, 360, 90), (40, 660, 360, 90)))
    front = Track(4, ((0, 420, 380, 120), (40, 860, 370, 120)), front=True)
    assert _missed(tmp_path, sources, [behind, front], 41, min_visible=0.3) == []


# -- what real cameras add: turned faces, dark frames, faces from the first frame ------------

TURNED = [  # (roll in degrees, face px, centre): lying on each side, upside down, diagonal
    (90.0, 100, (220, 200)), (180.0, 90, (640, 180)), (-90.0, 80, (1050, 220)),
    (45.0, 110, (330, 520)), (135.0, 90, (900, 520))]


def _turned_tracks(frames: int, n_sources: int) -> list[Track]:
    return [Track(k % n_sources, ((0, cx, cy, px), (frames - 1, cx + 30, cy + 10, px)),
                  roll=((0, roll),)) for k, (roll, px, (cx, cy)) in enumerate(TURNED)]


def test_faces_turned_in_the_image_plane_are_covered_on_every_frame(tmp_path, sources):
    """Regression: a face lying on its side (90 degrees) or upside down (a ceiling camera)
    was bare on a fifth of its frames: BlazeFace, trained upright, finds it on some looks
    only. The turned views find it, and its track window is turned the same way after; the
    protected box of a diagonal face holds it corner to corner. Without the turned views and
    the tracks' look (`track.appearance_hold`) the same clip leaves faces bare."""
    tracks = _turned_tracks(60, len(sources))
    # not yet every face-frame at the benchmark's 95 %: a few first frames of the diagonal
    # and upside-down faces come out 87-93 % covered, and a frame where the upright model
    # finds the upside-down face off its place (67 px for 90, lower) 84-87 %, its centre
    # covered (benchmarks/recall.py counts them)
    missed = _missed(tmp_path, sources, tracks, 60, overrides=["detect.turned_every=15"])
    assert len(missed) <= 0.02 * 60 * len(tracks)
    assert min([r["covered"] for r in missed], default=1.0) >= 0.8
    # without the turned views the tracks' look still holds most turned faces once the
    # upright passes found them (2 face-frames 94-95 % covered): both off, faces go bare
    unturned = _missed(tmp_path, sources, tracks, 60,
                       overrides=["detect.turned_every=0", "track.appearance_hold=0"])
    assert len(unturned) > len(missed)
    assert min(r["covered"] for r in unturned) < 0.85


def test_turned_faces_stay_covered_as_the_light_changes(tmp_path, sources):
    """One camera through a changing scene (a user's test clip): the turned faces in
    daylight, then dark (gain 0.35 and sensor noise), then under a 15 px motion blur, at
    CRF 26. What the detector learned of each face (its turn, its look) carries it from one
    light into the next: no face-frame has its centre (eyes, nose, mouth) bare, and every
    face box is at least 80 % covered (the upside-down 90 px face's first five frames
    80-88 %, boxed by a turned view looked at again: 88-93 % before near misses were).
    With the turned views and the tracks' look off, over twice as many face-frames are
    short of 95 %, down to 78 %."""
    from videotruth import Look

    frames = 60
    tracks = _turned_tracks(frames, len(sources))
    clip = tmp_path / "mixed.mp4"
    truths = write_scenario(Scenario("mixed", W, H, frames, tracks, Look(pan=1.5, crf=26),
                                     phases=((20, Look(gain=0.35, noise=5.0)),
                                             (40, Look(blur=15)))), sources, clip)

    def target_records(overrides):
        cfg = load_config(None, [*solid_overrides(), *overrides])
        anonymize_file(clip, tmp_path / "out.mp4", cfg)
        tally = score_file(tmp_path / "out.mp4", truths, cfg.protect.margin)
        return [r for r in tally.records if r["size"] >= 40 and r["visible"] >= 0.3]

    records = target_records([])
    assert not [r for r in records if not r["centre_protected"]]
    missed = [r for r in records if not r["protected"]]
    assert len(missed) <= 0.03 * len(records)
    assert min([r["covered"] for r in missed], default=1.0) >= 0.8
    off = [r for r in target_records(["detect.turned_every=0", "track.appearance_hold=0"])
           if not r["protected"]]
    assert len(off) > 2 * len(missed)
    assert min(r["covered"] for r in off) < 0.8


def _dark_clip(tmp_path, sources, frames: int):
    from videotruth import Look

    tracks = [Track(k % len(sources), ((0, cx, cy, px), (frames - 1, cx + 20, cy, px)))
              for k, (px, cx, cy) in enumerate(((48, 250, 200), (70, 700, 240),
                                                (100, 1000, 500), (60, 400, 560)))]
    clip = tmp_path / "dark.mp4"
    truths = write_scenario(Scenario("dark", W, H, frames, tracks,
                                     Look(gain=0.3, noise=5.0, crf=23)), sources, clip)
    return clip, truths


def test_faces_in_a_dark_frame_are_covered_and_the_rest_is_untouched(tmp_path, sources):
    """Regression: at night (gain 0.3 and sensor noise) faces the detector finds in daylight
    went bare. The models see the frame with its levels stretched; protection is the only
    change: outside the faces the output is bit-identical to the path without the stretch,
    and to the decoded input. (The path without it once left faces bare here; since dim
    frames get smaller tiles and the first frame is looked at in every tile, it covers them
    too, so this no longer shows what the stretch adds: see benchmarks/README.)"""
    import av
    import numpy as np

    from streamguard.frames import Frame
    from streamguard.process import FrameProcessor
    from videotruth import Tally

    clip, truths = _dark_clip(tmp_path, sources, 30)
    runs = {}
    for low_light in (True, False):
        cfg = load_config(None, [*solid_overrides(), "detect.turned_every=15",
                                 f"detect.low_light={str(low_light).lower()}"])
        processor = FrameProcessor(cfg)
        tally, outputs, inputs = Tally(), [], []
        with av.open(str(clip)) as c:
            for i, vf in enumerate(c.decode(video=0)):
                image = vf.to_ndarray(format="rgb24")
                done = processor.protect(processor.analyze(Frame(i, vf.pts, vf.time_base, image)))
                tally.score(done.image, truths[i], cfg.protect.margin)
                outputs.append(done.image)
                inputs.append(image)
        processor.close()
        runs[low_light] = (tally, outputs, inputs)
    lit, plain = runs[True], runs[False]
    assert [r for r in lit[0].records if not r["protected"]] == []
    for with_light, without, decoded in zip(lit[1], plain[1], lit[2]):
        # away from what either path protected, both are the decoded frame, bit for bit
        outside = ~_protected(with_light) & ~_protected(without)
        assert outside.mean() > 0.8
        assert np.array_equal(with_light[outside], decoded[outside])
        assert np.array_equal(without[outside], decoded[outside])


def test_small_faces_at_night_are_found_in_the_smaller_tiles_of_dim_frames(tmp_path, sources):
    """Regression: in an infrared night picture (grey, low contrast, lifted blacks, sensor
    noise) no face under 48 px was ever found: a 480 px tile shows the model a 44 px face at
    17 px, lost in the noise. Dim frames are cut into tiles of at most `dim_tile_side` (384)
    px; without that the same faces stay bare."""
    from videotruth import Look

    frames = 30
    tracks = [Track(k % len(sources), ((0, cx, cy, px), (frames - 1, cx + 25, cy + 5, px)))
              for k, (px, cx, cy) in enumerate(((44, 260, 210), (46, 760, 420),
                                                (42, 1030, 180), (46, 480, 560)))]
    clip = tmp_path / "infrared.mp4"
    truths = write_scenario(Scenario("infrared", W, H, frames, tracks,
                                     Look(infrared=True, noise=5.0, crf=23, pan=1.0)),
                            sources, clip)
    missed = {}
    for side in (384, 0):
        cfg = load_config(None, [*solid_overrides(), f"detect.dim_tile_side={side}"])
        anonymize_file(clip, tmp_path / "out.mp4", cfg)
        tally = score_file(tmp_path / "out.mp4", truths, cfg.protect.margin)
        missed[side] = [r for r in tally.records if r["size"] >= 40 and not r["protected"]]
    # not yet every face: some faces of 42-46 px are still never found at night (measured
    # over other photos: 50 of 180 face-frames bare with the smaller tiles, 120 without)
    assert len(missed[384]) <= 0.1 * frames * len(tracks)
    assert len(missed[0]) >= 0.5 * frames * len(tracks)


def test_turned_faces_at_night_are_found_by_the_night_model(tmp_path, sources):
    """Regression: in an infrared night picture, small faces turned in the image plane (44-60
    px at 45, 90, 135 and 180 degrees) were never found: BlazeFace scores them under 0.5 on
    every view, even in 256 px tiles. CenterFace (`detect.night_model`) takes the turned
    views of infrared frames and finds them; with BlazeFace there two of them stay bare on
    every frame."""
    from videotruth import Look

    frames = 30
    tracks = [Track(k % len(sources), ((0, cx, cy, px), (frames - 1, cx + 20, cy + 5, px)),
                    roll=((0, roll),))
              for k, (px, cx, cy, roll) in enumerate(((44, 160, 150, 90.0),
                                                      (60, 450, 130, 180.0),
                                                      (56, 1080, 220, 45.0),
                                                      (110, 900, 520, 135.0)))]
    clip = tmp_path / "infrared-turned.mp4"
    truths = write_scenario(Scenario("infrared", W, H, frames, tracks,
                                     Look(infrared=True, noise=5.0, crf=23, pan=1.0)),
                            sources, clip)
    missed = {}
    for model in ("centerface", "blazeface"):
        cfg = load_config(None, [*solid_overrides(), f'detect.night_model="{model}"'])
        anonymize_file(clip, tmp_path / "out.mp4", cfg)
        tally = score_file(tmp_path / "out.mp4", truths, cfg.protect.margin)
        missed[model] = [r for r in tally.records if r["size"] >= 40 and not r["protected"]]
    # every face is found; a face the turned views reach late in the clip is bare on its
    # first frames before the look-back (the 60 px upside-down face: frames 0-4 of 30)
    assert len(missed["centerface"]) <= 0.1 * frames * len(tracks)
    for k in range(len(tracks)):
        assert sum(r["track"] == k for r in missed["centerface"]) <= 0.2 * frames
    assert len(missed["blazeface"]) >= 2 * frames  # two faces' every frame, at least


def _protected(image):
    from videotruth import protected_mask

    return protected_mask(image)


CORNERS = [  # (face px, centre as shares of the frame): corners and edges, ~88 % inside
    (40, (0.0, 0.0)), (60, (1.0, 0.0)), (90, (0.0, 1.0)), (60, (1.0, 1.0)),
    (150, (1.0, 0.5)), (120, (0.5, 1.0)), (44, (0.5, 0.5))]


def _corner_tracks(frames: int, n_sources: int, width: int = W, height: int = H,
                   ) -> list[Track]:
    tracks = []
    for k, (px, (fx, fy)) in enumerate(CORNERS):
        inset = 0.38 * px
        cx = inset if fx == 0 else width - inset if fx == 1 else fx * width
        cy = inset * 1.3 if fy == 0 else height - inset * 1.3 if fy == 1 else fy * height
        tracks.append(Track(k % n_sources, ((0, cx, cy, px), (frames - 1, cx, cy + 4, px))))
    return tracks


def _first_and_last_missed(records: list[dict], frames: int) -> list[dict]:
    return [r for r in records if r["size"] >= 40 and min(r["inside"], r["visible"]) >= 0.3
            and not r["protected"] and r["t"] in (0, frames - 1)]


@pytest.mark.parametrize("path", ["offline", "segments", "live"])
def test_faces_present_from_the_first_frame_are_covered_on_it(tmp_path, sources, path):
    """Regression: a 60 px face in a corner from the first frame was bare on frames 0-13 at
    1080p (and a 180 px face at the edge on frames 0-4 at night): border tiles mirror the
    frame past its edge, and a face mostly inside, doubled by its mirror image, was not
    found until the look-back had let its first frames go. Border tiles now also show the
    frame as it is, every other round. Faces of 40-150 px in the corners and on the edges,
    from the first frame to the last, on files, Ray segments and live streams."""
    frames = 45
    clip = tmp_path / "corners.mp4"
    truths = write_scenario(Scenario("corners", W, H, frames, _corner_tracks(frames, len(sources))), sources,
                            clip)
    cfg = load_config(None, solid_overrides())
    if path == "live":
        tally = _live_tally(clip, truths, cfg)
    else:
        out = tmp_path / "out.mp4"
        if path == "offline":
            anonymize_file(clip, out, cfg)
        else:
            from streamguard.batch.segments import anonymize_segmented

            anonymize_segmented(clip, out, cfg, 0.5, cfg.ray.context_frames)
        tally = score_file(out, truths, cfg.protect.margin)
    assert {r["t"] for r in tally.records} >= {0, frames - 1}
    assert _first_and_last_missed(tally.records, frames) == []
    assert [r for r in tally.records if r["size"] >= 40 and not r["protected"]
            and min(r["inside"], r["visible"]) >= 0.3] == []


def _live_tally(clip, truths, cfg):
    from videotruth import score_live

    tally, got, _ = score_live(clip, truths, cfg)
    assert got == len(truths), f"{got} of {len(truths)} frames came out of the live stream"
    return tally
