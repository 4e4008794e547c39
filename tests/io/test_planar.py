"""Frames kept in their Y/U/V planes (frames.PlanarImage, pipeline.planar): the protection is
the RGB path's within rounding, nothing outside the protected regions changes, and formats the
planes cannot hold (10-bit, full-range yuvj, 4:4:4, odd sizes, rotated) still work through RGB."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamguard.config import Config
from streamguard.frames import Faces, Frame, PlanarImage
from streamguard.io.source import VideoSource
from streamguard.pipeline import anonymize_file
from streamguard.process import FrameProcessor
from tests.media import Sprite, decode_rgb, unprotected_faces, write_clip


@pytest.fixture(scope="module")
def clip(crops, tmp_path_factory):
    path = tmp_path_factory.mktemp("planar") / "faces.mp4"
    return write_clip(path, [Sprite(crops[0], 120, (200, 100), (3, 1)),
                             Sprite(crops[1], 70, (900, 400), (-2, 1))],
                      width=1280, height=720, n_frames=12, audio=False)


def decoded(path, planar: bool) -> list[Frame]:
    with VideoSource(path, planar=planar) as source:
        return [f for f in source.items() if isinstance(f, Frame)]


def test_planes_read_as_the_decoders_rgb_within_rounding(clip):
    planar, rgb = decoded(clip.path, True), decoded(clip.path, False)
    assert isinstance(planar[0].image, PlanarImage) and isinstance(rgb[0].image, np.ndarray)
    whole = np.asarray(planar[3].image).astype(int)
    diff = np.abs(whole - rgb[3].image.astype(int))
    # PyAV interpolates chroma, the planes repeat it: a level or two on average, a few at edges
    assert diff.mean() < 2 and diff.max() <= 8
    # a region, and the clipped index arrays the track lock samples with, read the same pixels
    image = planar[3].image
    assert np.array_equal(image[101:237, 333:519], whole[101:237, 333:519])
    rows, cols = np.clip(np.arange(-7, 50), 0, 719), np.clip(np.arange(1250, 1300), 0, 1279)
    assert np.array_equal(image[rows[:, None], cols[None, :]], whole[rows[:, None], cols[None, :]])


def test_a_painted_region_changes_nothing_outside_it():
    rng = np.random.default_rng(0)
    y = rng.integers(16, 236, (72, 96), dtype=np.uint8)
    u, v = (rng.integers(16, 240, (36, 48), dtype=np.uint8) for _ in range(2))
    before = PlanarImage(y, u, v)
    after = before.copy()
    after[13:50, 21:67] = (200, 30, 40)  # odd edges: chroma samples straddle them
    # inside, away from the chroma samples it shares with the old pixels: the colour written
    inside = np.asarray(after)[14:50, 22:66].astype(int)
    assert np.abs(inside - (200, 30, 40)).max() <= 3
    luma_out = np.ones(y.shape, bool)
    luma_out[13:50, 21:67] = False
    assert np.array_equal(after.y[luma_out], before.y[luma_out])
    chroma_out = np.ones(u.shape, bool)
    chroma_out[6:25, 10:34] = False  # every sample the region touches
    assert np.array_equal(after.u[chroma_out], before.u[chroma_out])
    assert np.array_equal(after.v[chroma_out], before.v[chroma_out])
    assert not np.array_equal(after.u[6:25, 10:34], before.u[6:25, 10:34])


@pytest.mark.parametrize("mode", ["mosaic", "adversarial-identity"])
def test_the_planar_path_protects_as_the_rgb_path_does(clip, mode):
    """Same faces in, same cells out (within rounding); the encoder's frame outside the
    protected regions is the decoded frame, bit for bit."""
    cfg = Config.model_validate({"protect": {"mode": mode}})
    planar, rgb = decoded(clip.path, True)[5], decoded(clip.path, False)[5]
    faces = Faces.from_boxes(np.array([b for b in clip.boxes[5]], np.float32))
    outs = []
    for frame in (planar, rgb):
        proc = FrameProcessor(cfg, detector=_NoDetector())
        outs.append(proc.protect(proc.apply(frame, faces)).image)
        proc.close()
    out_planar, out_rgb = outs
    assert isinstance(out_planar, PlanarImage)
    changed = np.any(out_rgb != rgb.image, axis=2)
    assert changed.sum() > 0.8 * sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in clip.boxes[5])
    # compared as the encoder receives both: the RGB path's frame made 4:2:0 by PyAV
    encoded = PlanarImage.from_video_frame(
        av.VideoFrame.from_ndarray(out_rgb, format="rgb24").reformat(format="yuv420p"))
    luma = np.abs(out_planar.y.astype(int) - encoded.y)[changed]
    assert luma.mean() < 1.5 and np.percentile(luma, 99) <= 4, (luma.mean(), luma.max())
    # chroma where a 2 x 2 sample lies inside one mosaic cell (two cells under one sample
    # are averaged differently by swscale and OpenCV: a filter choice, not a protection one)
    q = out_rgb.astype(int)
    flat = np.all((q[::2, ::2] == q[1::2, ::2]) & (q[::2, ::2] == q[::2, 1::2])
                  & (q[::2, ::2] == q[1::2, 1::2]), axis=2)
    cells = changed[::2, ::2] & flat
    assert cells.sum() > 0.5 * changed[::2, ::2].sum()
    for mine, theirs in ((out_planar.u, encoded.u), (out_planar.v, encoded.v)):
        chroma = np.abs(mine.astype(int) - theirs)[cells]
        assert chroma.mean() < 1.5 and np.percentile(chroma, 99) <= 6, (chroma.mean(),
                                                                          chroma.max())
    # outside: luma untouched; chroma untouched away from the regions' edges
    ys, xs = np.nonzero(changed)
    region = np.zeros(changed.shape, bool)
    region[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    grown = np.zeros(changed.shape, bool)
    grown[max(ys.min() - 2, 0):ys.max() + 3, max(xs.min() - 2, 0):xs.max() + 3] = True
    assert np.array_equal(out_planar.y[~changed & ~region], planar.image.y[~changed & ~region])
    chroma_far = ~grown[::2, ::2]
    assert np.array_equal(out_planar.u[chroma_far], planar.image.u[chroma_far])
    assert np.array_equal(out_planar.v[chroma_far], planar.image.v[chroma_far])


class _NoDetector:
    def detect(self, image, index):
        raise AssertionError("faces are given")

    def close(self):
        pass


@pytest.mark.parametrize("pix_fmt,codec,size", [
    ("yuv420p10le", "libx264", (480, 272)),   # 10-bit: not 8-bit planes, goes through RGB
    ("yuvj420p", "libx264", (480, 272)),      # full range: through RGB
    ("yuv420p", "libx264", (482, 270)),       # rows not in fours: planes still (to_video_frame)
])
def test_other_formats_still_come_out_protected(crops, tmp_path, pix_fmt, codec, size):
    clip = write_clip(tmp_path / "in.mkv", [Sprite(crops[0], 100, (150, 80), (2, 1))],
                      width=size[0], height=size[1], n_frames=12, audio=False, codec=codec,
                      pix_fmt=pix_fmt)
    out = tmp_path / "out.mp4"
    report = anonymize_file(clip.path, out, Config.model_validate({"pipeline": {"planar": True}}))
    frames, _ = decode_rgb(out)
    assert report.frames_written == 12 and len(frames) == 12
    assert unprotected_faces(clip, frames) == []


def test_planar_and_rgb_files_match_outside_the_faces(clip, tmp_path):
    """The whole file, both ways: the background of the planar output is at least as close
    to the input as the RGB round trip's (it skips a conversion), faces protected in both.
    The turned views and the dim frames' smaller tiles are off: this synthetic clip's
    smooth background reads as dim, and a false find on it in one path (the two paths show
    the models slightly different pictures) would be counted as conversion loss."""
    outs = {}
    for planar in (True, False):
        cfg = Config.model_validate({"pipeline": {"planar": planar},
                                     "detect": {"turned_every": 0, "dim_tile_side": 0}})
        out = tmp_path / f"out_{planar}.mp4"
        anonymize_file(clip.path, out, cfg)
        outs[planar], _ = decode_rgb(out)
        assert unprotected_faces(clip, outs[planar]) == []
    inp, _ = decode_rgb(clip.path)
    mask = np.ones(inp[0].shape[:2], bool)
    for x0, y0, x1, y1 in clip.boxes[6]:
        mask[max(y0 - 60, 0):y1 + 60, max(x0 - 60, 0):x1 + 60] = False

    def psnr(a, b):
        mse = ((a[mask].astype(float) - b[mask]) ** 2).mean()
        return 10 * np.log10(255 ** 2 / max(mse, 1e-9))

    assert psnr(outs[True][6], inp[6]) >= psnr(outs[False][6], inp[6]) - 0.1
