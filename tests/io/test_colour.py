"""The input's colour description survives: frames go back to YUV with the matrix they were
decoded with, and the output carries the input's tags (before, a BT.709 input came out
converted with BT.601 and untagged: luma up to 19 levels off)."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamguard.config import Config
from streamguard.io.colour import Colour, rgb_to_yuv420
from streamguard.pipeline import anonymize_file

H, W = 180, 322  # rows a multiple of 2 but not of 4; odd chroma width


def _smooth_rgb(h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([40 + 170 * (xx / w), 200 - 150 * (yy / h),
                     60 + 100 * np.sin(xx / 60.0) ** 2], -1).astype(np.uint8)


@pytest.mark.parametrize("colorspace", [2, 5, 6, 1, 9, 7])  # unspecified, 601 x2, 709, 2020, 240M
def test_rgb_goes_back_to_yuv_with_the_matrix_it_was_decoded_with(colorspace):
    rgb = _smooth_rgb()
    colour = Colour(colorspace)
    frame = av.VideoFrame.from_ndarray(rgb_to_yuv420(rgb, colour), format="yuv420p")
    colour.tag(frame)
    assert np.abs(frame.to_ndarray(format="rgb24").astype(int) - rgb).max() <= 6
    # the planes are swscale's own conversion with that matrix, within rounding
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=colour.swscale_colorspace, dst_color_range=1)
    assert np.abs(frame.to_ndarray().astype(int) - ref.to_ndarray()).max() <= 1


def _tagged_clip(path, colorspace: int, n: int = 6) -> np.ndarray:
    """A smooth, faceless clip whose planes were made with `colorspace`'s matrix and tagged
    so; returns its Y/U/V planes (frame 3) as decoded."""
    rgb = _smooth_rgb(272, 480)
    colour = Colour(colorspace, colorspace, colorspace)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 480, 272, "yuv420p"
        colour.tag(s.codec_context)
        s.codec_context.options = {"crf": "10"}
        for i in range(n):
            f = av.VideoFrame.from_ndarray(rgb_to_yuv420(rgb, colour), format="yuv420p")
            colour.tag(f)
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    return _planes(path)[0]


def _planes(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        return frames[3].to_ndarray(), Colour.of(stream)


@pytest.mark.parametrize("planar", [False, True])
@pytest.mark.parametrize("colorspace", [1, 5])  # BT.709 (most HD footage), BT.601
def test_a_tagged_input_keeps_its_colours_and_its_tags(tmp_path, colorspace, planar):
    src = tmp_path / "in.mp4"
    before = _tagged_clip(src, colorspace)
    out = tmp_path / "out.mp4"
    cfg = Config.model_validate({"pipeline": {"planar": planar}, "protect": {"mode": "mosaic"}})
    anonymize_file(src, out, cfg)
    after, tags = _planes(out)
    assert tags == Colour(colorspace, colorspace, colorspace)
    assert np.abs(after.astype(int) - before).max() <= 5
