"""io/sink.py and io/encode.py on small generated media: outputs appear only when complete,
keep every frame's timing, and live recordings roll into playable files."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from streamguard.config import EncodeConfig
from streamguard.errors import OutputError
from streamguard.frames import Frame
from streamguard.io.encode import encodable_size, pad_to, to_video_frame
from streamguard.io.publish import LIVE_TIME_BASE, SegmentRecorder
from streamguard.io.sink import VideoSink
from streamguard.io.source import VideoSource
from media import audio_packets, write_clip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("io") / "tiny.mp4", [], width=160, height=96,
                      n_frames=12)


def _copy(src_path, dst_path, stop_after: int | None = None):
    with VideoSource(src_path) as src, VideoSink(dst_path, src.info, EncodeConfig()) as sink:
        for n, item in enumerate(src.items()):
            if stop_after is not None and n == stop_after:
                raise RuntimeError("the run fails midway")
            if isinstance(item, Frame):
                sink.write(item)
            else:
                sink.passthrough(item)
        sink.finish()


def test_a_finished_output_keeps_every_frame_pts_and_audio_byte(tiny, tmp_path):
    out = tmp_path / "out.mp4"
    _copy(tiny.path, out)
    with av.open(str(out)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert len(pts) == 12 and pts == tiny.pts
    assert audio_packets(out) == audio_packets(tiny.path)
    assert not list(tmp_path.glob(".*partial*"))


def test_a_failed_run_leaves_nothing_behind(tiny, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        _copy(tiny.path, out, stop_after=8)
    assert list(tmp_path.iterdir()) == []


def test_an_output_path_that_is_a_folder_is_refused(tiny, tmp_path):
    (tmp_path / "taken.mp4").mkdir()
    with VideoSource(tiny.path) as src, pytest.raises(OutputError, match="folder"):
        VideoSink(tmp_path / "taken.mp4", src.info, EncodeConfig())


@pytest.mark.parametrize("fmt, size, expected", [
    ("yuv420p", (161, 97), (162, 98)), ("yuv422p", (161, 97), (162, 97)),
    ("yuv444p", (161, 97), (161, 97))])
def test_odd_sizes_grow_to_what_the_pixel_format_holds(fmt, size, expected):
    assert encodable_size(fmt, *size) == expected


def test_padding_repeats_the_last_row_and_column_and_keeps_timing():
    image = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    padded = pad_to(image, 4, 6)
    assert padded.shape == (6, 4, 3)
    assert (padded[:5, :3] == image).all()
    assert (padded[5, :3] == image[4]).all() and (padded[:5, 3] == image[:, 2]).all()
    vf = to_video_frame(image, 4, 6, 42, Fraction(1, 90))
    assert (vf.width, vf.height, vf.pts, vf.time_base) == (4, 6, 42, Fraction(1, 90))


def test_recordings_roll_into_playable_segments(tmp_path):
    rec = SegmentRecorder(str(tmp_path), "door", segment_s=0.5)
    step = int(Fraction(1, 30) / LIVE_TIME_BASE)
    for i in range(45):  # 1.5 s at 30 fps
        image = np.full((64, 96, 3), 5 * i % 255, np.uint8)
        rec.write(Frame(i, i * step, LIVE_TIME_BASE, image), placeholder=False)
    rec.close()
    files = sorted(tmp_path.glob("door-*.mp4"))
    assert len(files) == 3 and not list(tmp_path.glob(".*partial"))
    counts = []
    for f in files:
        with av.open(str(f)) as c:
            counts.append(len(list(c.decode(video=0))))
    assert sum(counts) == 45 and all(n == 15 for n in counts)


def _bitstream(path) -> dict:
    """What a player and an archive see of an encoded H.264 stream: its parameters, and the
    encoder's own settings line (x264 writes every option it ran with into the first frame)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        ctx = v.codec_context
        first = bytes(next(c.demux(v)))
        settings = first[first.index(b"options: "):].split(b"\x00")[0].split(b"\x80")[0]
        return {"codec": ctx.name, "profile": ctx.profile, "size": (ctx.width, ctx.height),
                "pix_fmt": ctx.pix_fmt, "range": ctx.color_range,
                "colours": (ctx.colorspace, ctx.color_primaries, ctx.color_trc),
                "x264": settings.decode("ascii", "replace")}


@pytest.mark.parametrize("cfg", [EncodeConfig(), EncodeConfig(crf=30, preset="fast",
                                                              options={"g": "12"})],
                         ids=["file-defaults", "custom"])
def test_a_live_recording_and_a_file_output_encode_alike(tmp_path, cfg):
    """One encoder: a recording (`live.encode`) and a file output given the same settings and
    the same frames give the same bitstream: profile, size, format, colour tags and every
    x264 option. (The live encoder once hard-coded ultrafast, CRF 23, GOP 30.)"""
    from streamguard.io.colour import Colour
    from streamguard.io.source import SourceInfo

    rng = np.random.default_rng(3)
    images = [np.clip(rng.normal(120, 40, (96, 160, 3)) + i, 0, 255).astype(np.uint8)
              for i in range(30)]
    colour = Colour(1, 1, 1)  # BT.709 tags, as most HD cameras send
    info = SourceInfo(path="cam", width=160, height=96, time_base=Fraction(1, 30),
                      average_rate=Fraction(30), frames=0, duration_s=None, colour=colour)
    with VideoSink(tmp_path / "file.mp4", info, cfg) as sink:
        for i, image in enumerate(images):
            sink.write(Frame(i, i, Fraction(1, 30), image))
        sink.finish()
    rec = SegmentRecorder(str(tmp_path / "rec"), "cam", segment_s=60, encode=cfg)
    for i, image in enumerate(images):
        rec.write(Frame(i, i * 3000, LIVE_TIME_BASE, image, colour=colour), placeholder=False)
    rec.close()
    file, live = _bitstream(tmp_path / "file.mp4"), _bitstream(rec.files[0])
    assert file == live
    assert f"crf={cfg.crf:.1f}" in live["x264"] and live["colours"] == (1, 1, 1)
