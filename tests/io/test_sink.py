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
from streamguard.io.sink import LIVE_TIME_BASE, SegmentRecorder, VideoSink
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
