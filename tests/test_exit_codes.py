"""Every exit code says what happened: damaged inputs are not reported as success, a report
that cannot be written is refused before any work, odd inputs and options get the right code
and one line. Each case here was found by trying streamguard as a new user would."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from media import Sprite, write_clip
from test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def clip(crops, tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("codes") / "clip.mp4",
                      [Sprite(crops[0], 90, (100, 50), (1.0, 0.2))], width=320, height=240,
                      n_frames=60, gop=15)


def test_a_jpeg_cut_in_half_is_damaged_not_a_success(tmp_path):
    """Regression: the decoder fills what is missing (a green or grey band) without an
    error; exit 0, no word."""
    image = (np.random.default_rng(0).random((240, 320, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "whole.jpg"), image)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[:len(data) // 2])
    proc = run("anonymize", tmp_path / "half.jpg", "-o", tmp_path / "out.jpg")
    assert_one_line_error(proc, 6, "damaged or truncated image")
    assert not (tmp_path / "out.jpg").exists()
    assert run("anonymize", tmp_path / "whole.jpg", "-o", tmp_path / "ok.jpg").returncode == 0


def test_a_fragmented_mp4_cut_short_is_damaged_not_a_success(clip, tmp_path):
    """Regression: a camera's fragmented MP4 cut at 60 % of its bytes wrote 53 frames with
    exit 0: the decoder's error on the cut packet was lost in its frame threads. By default
    the file fails (exit 6); `--on-corrupt skip` keeps what decodes and counts the skip."""
    frag = tmp_path / "frag.mp4"
    with av.open(str(clip.path)) as inp, av.open(
            str(frag), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(frag.read_bytes()[:int(frag.stat().st_size * 0.6)])
    proc = run("anonymize", cut, "-o", tmp_path / "out.mp4")
    assert_one_line_error(proc, 6, "damaged or truncated")
    assert not (tmp_path / "out.mp4").exists()
    proc = run("anonymize", cut, "-o", tmp_path / "out.mp4", "--on-corrupt", "skip",
               "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["files"][0]["packets_skipped"] >= 1


@pytest.mark.parametrize("report", ["/proc/nope/r.json", "{tmp}"])
def test_a_report_that_cannot_be_written_is_refused_before_any_work(clip, tmp_path, report):
    """Regression: `--report /proc/nope/r.json` ran the whole job, then exited 70 'internal
    error: FileNotFoundError' and left the video behind."""
    proc = run("anonymize", clip.path, "-o", tmp_path / "out.mp4",
               "--report", report.format(tmp=tmp_path))
    assert_one_line_error(proc, 8, "cannot write the report")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_1x1_video_is_padded_not_refused(tmp_path):
    """Regression: exit 8 'container cannot hold these streams' (x264 cannot open at 1x1)."""
    src = tmp_path / "dot.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("ffv1", rate=30)
        vs.width, vs.height, vs.pix_fmt = 1, 1, "yuv420p"
        for i in range(10):
            vf = av.VideoFrame.from_ndarray(np.full((1, 1, 3), 20 * i, np.uint8), format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    proc = run("anonymize", src, "-o", tmp_path / "out.mp4")
    assert proc.returncode == 0, proc.stderr
    with av.open(str(tmp_path / "out.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 10 and frames[0].shape == (2, 2, 3)


def test_an_encoder_option_the_encoder_does_not_know_is_refused_by_name(clip, tmp_path):
    """Regression: `--set encode.options.bogus="x"` was silently ignored (FFmpeg drops
    unknown options), where unknown config keys are otherwise refused by name."""
    proc = run("anonymize", clip.path, "-o", tmp_path / "out.mp4",
               "--set", 'encode.options.bogus="x"')
    assert_one_line_error(proc, 2, "encode.options.bogus", "no such option")
    assert [p.name for p in tmp_path.iterdir()] == []
    ok = run("anonymize", clip.path, "-o", tmp_path / "out.mp4",
             "--set", 'encode.options.tune="film"')
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("kind, said", [("alpha", "transparency"), ("deep", "16-bit")])
def test_what_a_png_loses_is_said(tmp_path, kind, said):
    """Regression: PNG alpha was dropped, and 16-bit PNG became 8-bit, without a word."""
    if kind == "alpha":
        image = np.zeros((64, 64, 4), np.uint8)
        image[..., 3] = 128
    else:
        image = (np.random.default_rng(1).random((64, 64, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), image)
    proc = run("anonymize", tmp_path / "in.png", "-o", tmp_path / "out.png")
    assert proc.returncode == 0, proc.stderr
    assert said in proc.stderr


def test_a_text_file_is_not_a_video_even_when_ffmpeg_reads_it_as_subtitles(tmp_path):
    """Regression: an .srt was refused as 'no video stream (streams: subtitle)'."""
    text = tmp_path / "notes.srt"
    text.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n")
    proc = run("anonymize", text, "-o", tmp_path / "out.mp4")
    assert_one_line_error(proc, 5, "not a video file")
