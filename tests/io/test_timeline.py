"""The output clock across timestamp discontinuities (`streamguard.io.timeline.Timeline`)."""

from __future__ import annotations

from fractions import Fraction

from streamguard.io.timeline import Timeline

V = Fraction(1, 90000)  # video ticks (MPEG-TS)
A = Fraction(1, 48000)  # audio ticks


def _video(timeline, seconds):
    return [timeline.pts("v", round(s / V), V) * V for s in seconds]


def test_without_discontinuities_every_timestamp_comes_out_unchanged():
    timeline = Timeline()
    assert [timeline.pts("v", p, V) for p in (0, 3000, 6000, 9003)] == [
        0, 3000, 6000, 9003]
    assert [timeline.pts("a", p, A) for p in (0, 1024, 2048)] == [0, 1024, 2048]
    assert timeline.discontinuities == 0


def test_a_restart_at_zero_continues_one_frame_after_the_last():
    timeline = Timeline(step=Fraction(1, 30))
    out = _video(timeline, [0, 1 / 30, 2 / 30, 0, 1 / 30])
    assert out[3] == out[2] + Fraction(1, 30)
    assert all(b > a for a, b in zip(out, out[1:]))
    assert timeline.discontinuities == 1


def test_a_jump_of_an_hour_ahead_is_closed_up_and_audio_follows_the_video():
    timeline = Timeline(step=Fraction(1, 30))
    out_v = _video(timeline, [0, 1 / 30, 2 / 30])
    a0 = timeline.pts("a", 0, A) * A
    later = _video(timeline, [3600, 3600 + 1 / 30])
    a1 = timeline.pts("a", round(3600 / A), A) * A  # the audio's own hour-long jump
    assert later[0] == out_v[-1] + Fraction(1, 30)
    assert a1 - later[0] == a0 - 0  # audio sits where it sat against the video
    assert timeline.discontinuities == 1


def test_the_old_pieces_late_video_keeps_its_offset_after_the_audio_began_the_new_one():
    """A video decoder still gives the old piece's last frames after the new piece's audio
    was demuxed: those frames keep their times, and the video then joins the new piece."""
    timeline = Timeline(step=Fraction(1, 30))
    _video(timeline, [0, 1 / 30])
    timeline.pts("a", 0, A)
    timeline.pts("a", round(Fraction(1, 10) / A), A)
    new_audio = timeline.pts("a", 0, A) * A  # the new piece's audio: back to 0
    late = _video(timeline, [2 / 30, 3 / 30])  # the old piece's last frames, decoded late
    assert late == [Fraction(2, 30), Fraction(3, 30)]
    first_new = _video(timeline, [0])[0]
    assert first_new > late[-1]
    assert first_new == new_audio  # both restarted at 0: still together
    assert timeline.discontinuities == 1


def test_sparse_streams_may_pause_for_minutes_without_a_discontinuity():
    timeline = Timeline()
    timeline.pts("s", 0, Fraction(1, 1000), dense=False)
    assert timeline.pts("s", 600_000, Fraction(1, 1000), dense=False) == 600_000
    assert timeline.discontinuities == 0


def test_a_step_back_of_one_packet_is_a_discontinuity_the_output_never_goes_back():
    timeline = Timeline(step=Fraction(1, 30))
    out = [timeline.pts("a", p, A) for p in (4800, 4700, 5000)]
    assert all(b > a for a, b in zip(out, out[1:])) and timeline.discontinuities == 1


def test_a_new_piece_never_lands_on_the_last_tick_of_a_coarse_time_base():
    """Regression: with a step below one tick of the stream's time base (a header stating
    15,360 fps, milliseconds in Matroska), the first frame of a new piece got the last
    frame's pts and the muxer refused the file."""
    ms = Fraction(1, 1000)
    timeline = Timeline(step=Fraction(1, 15360))
    out = [timeline.pts("v", p, ms) for p in (900, 933, 967, 500, 533)]
    assert all(b > a for a, b in zip(out, out[1:])), out
