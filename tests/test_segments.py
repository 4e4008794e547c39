"""The split-protect-join path (what Ray workers run), in one process: the output must keep
every frame, timestamp and audio byte of the single-machine path, and protect every face,
across the cuts too."""

from __future__ import annotations

import dataclasses

import av
import pytest

from streamguard.assets import asset_path
from streamguard.config import load_config
from streamguard.errors import OutputError
from streamguard.pipeline import anonymize_file
from streamguard.process import FrameProcessor
from streamguard.batch.segments import (
    SegmentJoiner,
    anonymize_segmented,
    iter_jobs,
    plan_segments,
    process_segment,
)
from media import (
    Sprite,
    audio_packets,
    decode_rgb,
    pts_seconds,
    subtitle_packets,
    unprotected_faces,
    write_clip,
)

CFG = load_config(None, ["ray.segment_s=1.0"])


def keyframe_pts(path):
    with av.open(str(path)) as c:
        return [p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe]


@pytest.fixture(scope="module")
def long_clip(crops, tmp_path_factory):
    """4 s at 30 fps, GOP 24, B-frames (x264 veryfast), audio; faces cross every cut, one
    enters right after a cut."""
    sprites = [Sprite(crops[0], 70, (10, 40), (4, 0.5)),
               Sprite(crops[1], 56, (520, 230), (-3, -1)),
               Sprite(crops[2], 60, (700, 60), (-4, 0))]  # enters from the right at ~frame 20
    return write_clip(tmp_path_factory.mktemp("seg") / "long.mp4", sprites, width=640,
                      height=360, n_frames=120, gop=24, preset="veryfast")


def test_plan_cuts_only_at_keyframes_and_owns_every_frame_once(long_clip):
    plan = plan_segments(long_clip.path, 1.0)
    keys = keyframe_pts(long_clip.path)
    cuts = [s.start for s in plan.segments[1:]]
    assert len(plan.segments) >= 3
    assert set(cuts) <= set(keys)
    assert sum(s.frames for s in plan.segments) == plan.frames == 120


def test_segmented_output_keeps_frames_pts_and_audio_and_protects_every_face(long_clip,
                                                                             tmp_path):
    out = tmp_path / "seg.mp4"
    parts = []
    report = anonymize_segmented(long_clip.path, out, CFG, 1.0, CFG.ray.context_frames,
                                 on_segment=parts.append)
    assert len(parts) >= 3
    frames, times = decode_rgb(out)
    _, t_in = decode_rgb(long_clip.path)
    assert len(frames) == report.frames_written == 120
    assert pts_seconds(times) == pts_seconds(t_in)
    assert audio_packets(out) == audio_packets(long_clip.path)
    assert unprotected_faces(long_clip, frames) == []
    # the single-machine path gives the same frames and times
    single = tmp_path / "single.mp4"
    anonymize_file(long_clip.path, single, CFG)
    _, t_single = decode_rgb(single)
    assert pts_seconds(t_single) == pts_seconds(times)


def test_a_face_entering_just_after_a_cut_is_backfilled_before_it(crops, tmp_path):
    """Found only from frame 25 on (a cut at 24): the look-back must still cover frames
    before the cut, which belong to the previous segment."""
    clip = write_clip(tmp_path / "enter.mp4", [Sprite(crops[0], 90, (640, 120), (-8, 0))],
                      width=640, height=360, n_frames=72, gop=24, audio=False)
    plan = plan_segments(clip.path, 0.5)
    assert plan.segments[1].start is not None
    out = tmp_path / "enter_out.mp4"
    anonymize_segmented(clip.path, out, CFG, 0.5, CFG.ray.context_frames)
    frames, _ = decode_rgb(out)
    assert unprotected_faces(clip, frames, min_visible=0.5) == []


def test_without_context_frames_the_cut_would_leak(crops, tmp_path):
    """The check above is meaningful: with no context a segment cannot see the face that
    enters after its end, and frames before the cut keep it visible."""
    clip = write_clip(tmp_path / "enter.mp4", [Sprite(crops[0], 90, (640, 120), (-8, 0))],
                      width=640, height=360, n_frames=72, gop=24, audio=False)
    cfg = load_config(None, ["ray.context_frames=0", "track.lookback=0"])
    out = tmp_path / "enter_noctx.mp4"
    anonymize_segmented(clip.path, out, cfg, 0.5, 0)
    frames, _ = decode_rgb(out)
    assert len(unprotected_faces(clip, frames, min_visible=0.3)) >= 1


@pytest.mark.parametrize("ext,codec,vfr", [(".mkv", "libx264", True), (".webm", "libvpx-vp9", False),
                                           (".mkv", "libx265", False), (".avi", "mpeg4", False),
                                           (".ts", "libx264", False)])
def test_vfr_and_other_codecs_and_containers(crops, tmp_path, ext, codec, vfr):
    clip = write_clip(tmp_path / f"in{ext}", [Sprite(crops[1], 80, (60, 40), (5, 2))],
                      width=480, height=270, n_frames=60, gop=12, vfr=vfr,
                      codec=codec, audio=ext in (".mkv", ".ts"))
    out = tmp_path / f"out{ext}"
    anonymize_segmented(clip.path, out, CFG, 0.5, CFG.ray.context_frames)
    single = tmp_path / f"single{ext}"
    anonymize_file(clip.path, single, CFG)
    frames, times = decode_rgb(out)
    _, t_single = decode_rgb(single)
    assert len(frames) == 60
    # exactly the single-machine path's timing (which equals the input's, except that an
    # MPEG-TS output shifts every stream by one constant)
    assert pts_seconds(times) == pts_seconds(t_single)
    if ext != ".ts":
        assert pts_seconds(times) == pts_seconds(decode_rgb(clip.path)[1])
    assert audio_packets(out) == audio_packets(single)
    assert unprotected_faces(clip, frames) == []


@pytest.mark.parametrize("name", ["single_face.mp4", "no_face.mp4"])
def test_real_clips_with_edit_lists_keep_the_single_machine_frames(tmp_path, name):
    src = asset_path(name)
    seg, single = tmp_path / f"seg_{name}", tmp_path / f"one_{name}"
    anonymize_segmented(src, seg, CFG, 1.0, CFG.ray.context_frames)
    anonymize_file(src, single, CFG)
    _, t_seg = decode_rgb(seg)
    _, t_one = decode_rgb(single)
    assert pts_seconds(t_seg) == pts_seconds(t_one)
    assert audio_packets(seg) == audio_packets(single)


def test_a_segment_from_a_mismatched_encoder_is_refused_and_nothing_is_left(long_clip,
                                                                           tmp_path):
    plan = plan_segments(long_clip.path, 1.0)
    out = tmp_path / "mismatch.mp4"
    processor = FrameProcessor(CFG)
    try:
        jobs = iter_jobs(plan, "long", ".mp4", CFG.ray.context_frames)
        joiner = SegmentJoiner(plan, out, CFG)
        joiner.add(process_segment(next(jobs), CFG, processor))
        bad = process_segment(next(jobs), CFG, processor)  # then its headers are altered
        with pytest.raises(OutputError, match="other codec headers"):
            joiner.add(dataclasses.replace(bad, extradata=bad.extradata + b"\x00"))
        joiner.abort()
    finally:
        processor.close()
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_odd_frame_sizes_are_padded_in_segments_too(crops, tmp_path):
    clip = write_clip(tmp_path / "odd.mkv", [Sprite(crops[0], 90, (120, 60), (2, 1))],
                      width=321, height=241, n_frames=48, gop=12, codec="ffv1",
                      pix_fmt="yuv444p", audio=False)
    out = tmp_path / "odd_out.mkv"
    anonymize_segmented(clip.path, out, CFG, 0.5, CFG.ray.context_frames)
    frames, _ = decode_rgb(out)
    assert len(frames) == 48 and frames[0].shape == (242, 322, 3)
    assert unprotected_faces(clip, [f[:241, :321] for f in frames]) == []


class _Blind:
    """A detector that always fails: every frame must be protected whole and counted."""

    def detect(self, image, index, around=None):
        raise RuntimeError("simulated detector crash")

    def close(self):
        """Nothing to release."""


def test_reports_count_each_frame_and_track_once_across_cuts(long_clip, tmp_path):
    seg_report = anonymize_segmented(long_clip.path, tmp_path / "s.mp4", CFG, 1.0,
                                     CFG.ray.context_frames)
    single = anonymize_file(long_clip.path, tmp_path / "o.mp4", CFG)
    assert seg_report.frames == single.frames == 120
    # three faces walk through every cut: context frames must not count them again
    assert abs(seg_report.tracks - single.tracks) <= 1, (seg_report.tracks, single.tracks)
    blind = FrameProcessor(CFG, detector=_Blind())
    try:
        failed = anonymize_segmented(long_clip.path, tmp_path / "b.mp4", CFG, 1.0,
                                     CFG.ray.context_frames, processor=blind)
    finally:
        blind.close()
    assert failed.failed_closed == failed.detect_errors == 120  # not 120 + context frames


def test_subtitles_survive_the_join(crops, tmp_path):
    clip = write_clip(tmp_path / "subs.mkv", [Sprite(crops[0], 90, (100, 60), (2, 1))],
                      width=480, height=270, n_frames=60, gop=12, subtitles=True)
    out = tmp_path / "subs_out.mkv"
    anonymize_segmented(clip.path, out, CFG, 0.5, CFG.ray.context_frames)
    assert subtitle_packets(out) == subtitle_packets(clip.path) != []
    assert audio_packets(out) == audio_packets(clip.path)


def test_frames_damaged_by_lost_data_are_protected_whole_across_cuts(long_clip, tmp_path,
                                                                     monkeypatch):
    """As on one machine: a frame the decoder patched (flagged corrupt) and the frames after
    it up to the next keyframe fail closed (protect.damaged = "frame"), counted once."""
    from streamguard.batch import segments

    class Patched:  # a decoded frame the decoder flagged as patched
        def __init__(self, vf):
            self._vf, self.is_corrupt = vf, True

        def __getattr__(self, name):
            return getattr(self._vf, name)

    hit = long_clip.pts[30]  # GOP 24: damaged from frame 30 to 47, keyframe at 48
    decode = segments._decode
    monkeypatch.setattr(segments, "_decode", lambda job, decoder, timeline: (
        (pts, Patched(vf) if pts == hit else vf) for pts, vf in decode(job, decoder, timeline)))
    report = anonymize_segmented(long_clip.path, tmp_path / "s.mp4", CFG, 1.0,
                                 CFG.ray.context_frames)
    assert report.frames == 120
    assert report.frames_damaged == report.failed_closed == 18
