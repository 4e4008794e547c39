"""Recordings as cameras and NVRs write them: pieces joined with `cat` whose timestamps restart
at 0 (at another size), jump ahead by an hour, or go back. Every frame is kept, in order, on
one increasing clock, audio in sync, every face protected, files and Ray segments alike."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import PROTECTED, Sprite, decode_rgb, detail_similarity, write_clip
from test_cli import run

N = 30  # frames per piece


def _shifted(src: Path, dst: Path, shift_s: float, fmt: str | None = None) -> None:
    """Remux `src` (video + audio) into `dst`, every timestamp moved by `shift_s`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.dts is None or packet.stream.index not in streams:
                continue
            d = round(shift_s / packet.time_base)
            packet.pts += d
            packet.dts += d
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


@pytest.fixture(scope="module")
def pieces(crops, tmp_path_factory):
    """Two camera pieces with a face and audio: 640x360, then 1280x720 (a camera restarted
    at another resolution), each starting at timestamp 0."""
    folder = tmp_path_factory.mktemp("pieces")
    a = write_clip(folder / "a.mp4", [Sprite(crops[0], 90, (120, 60), (1.0, 0.3))],
                   width=640, height=360, n_frames=N, gop=15)
    b = write_clip(folder / "b.mp4", [Sprite(crops[1], 180, (500, 150), (-1.5, 0.5))],
                   width=1280, height=720, n_frames=N, gop=15)
    return a, b


def _joined(pieces, folder: Path, shift_b_s: float) -> Path:
    a, b = pieces
    _shifted(a.path, folder / "a.ts", 0, "mpegts")
    _shifted(b.path, folder / "b.ts", shift_b_s, "mpegts")
    joined = folder / "joined.ts"  # MPEG-TS pieces join byte-wise, as `cat` joins them
    joined.write_bytes((folder / "a.ts").read_bytes() + (folder / "b.ts").read_bytes())
    return joined


def _faces_protected(pieces, frames: list[np.ndarray]) -> None:
    """Every output frame's face has lost its fine detail (the second piece is rescaled to
    the first's 640x360)."""
    for k, frame in enumerate(frames):
        clip, scale = (pieces[0], 1.0) if k < N else (pieces[1], 0.5)
        x0, y0, x1, y1 = (int(v * scale) for v in clip.boxes[k % N][0])
        m = (x1 - x0) // 5
        ref = clip.frames[k % N][int(y0 / scale) + int(m / scale):int(y1 / scale) - int(m / scale),
                                 int(x0 / scale) + int(m / scale):int(x1 / scale) - int(m / scale)]
        ref = _resize(ref, (x1 - x0 - 2 * m, y1 - y0 - 2 * m))
        got = frame[y0 + m:y1 - m, x0 + m:x1 - m]
        assert detail_similarity(ref, got) < PROTECTED, f"frame {k}: the face is bare"


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _times(path: Path) -> tuple[list[float], list[float]]:
    """(video frame times, audio packet times), seconds, as a player reads them."""
    with av.open(str(path)) as c:
        video = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [float(p.pts * p.time_base) for p in c.demux(c.streams.audio[0])
                 if p.dts is not None] if c.streams.audio else []
    return video, audio


def _anonymize(joined: Path, out: Path, how: str) -> dict:
    if how == "file":
        proc = run("anonymize", joined, "-o", out, "--report", out.with_suffix(".json"))
        assert proc.returncode == 0, proc.stderr
        return json.loads(out.with_suffix(".json").read_text())["files"][0]
    from streamguard.batch.segments import anonymize_segmented
    from streamguard.config import load_config

    report = anonymize_segmented(joined, out, load_config(None, []), segment_s=0.4,
                                 context_frames=15)
    return report.to_dict()


@pytest.mark.parametrize("how", ["file", "segments"])
def test_joined_recordings_restarting_at_zero_keep_every_frame_in_order_protected(
        pieces, tmp_path, how):
    """Regression: two camera pieces joined with `cat`, each starting at timestamp 0 (the
    second at another size), failed with 'writing failed' and exit 8."""
    joined = _joined(pieces, tmp_path, 0.0)
    out = tmp_path / "out.mp4"
    report = _anonymize(joined, out, how)
    frames, _ = decode_rgb(out)  # playable from start to end
    assert len(frames) == 2 * N
    video, audio = _times(out)
    assert all(b > a for a, b in zip(video, video[1:])), "video time goes back"
    assert all(b > a for a, b in zip(audio, audio[1:])), "audio time goes back"
    # the second piece follows the first at once (Ray leaves half a second for the audio)
    assert video[N] - video[N - 1] < (0.25 if how == "file" else 0.6)
    assert report["pts_discontinuities"] == 1
    # and its audio sits where it sat against its video, to the millisecond
    video_in, audio_in = _times(joined)
    first = next(i for i in range(1, len(audio_in)) if audio_in[i] < audio_in[i - 1])
    assert (video[N] - audio[first]) == pytest.approx(video_in[N] - audio_in[first], abs=0.002)
    _faces_protected(pieces, frames)


def test_ray_segments_cut_where_the_size_changes_keep_every_frame(pieces, tmp_path):
    """Regression (the Ray path's own handling of a mid-file resolution change): pieces at two
    sizes with continuous timestamps, cut into segments at the join. The segment decoder's
    rescaled frames carried no time base and crashed the segment."""
    from streamguard.batch.segments import plan_segments

    joined = _joined(pieces, tmp_path, N / 30)  # the second piece right after the first
    assert len(plan_segments(joined, 0.4).segments) >= 2
    out = tmp_path / "out.mp4"
    report = _anonymize(joined, out, "segments")
    frames, _ = decode_rgb(out)
    assert len(frames) == 2 * N and report["pts_discontinuities"] == 0
    assert {f.shape for f in frames} == {(360, 640, 3)}
    _faces_protected(pieces, frames)


def test_a_jump_of_an_hour_ahead_keeps_the_frames_and_the_audio_in_sync(pieces, tmp_path):
    joined = _joined(pieces, tmp_path, 3600.0)
    out = tmp_path / "out.mp4"
    report = _anonymize(joined, out, "file")
    video_in, audio_in = _times(joined)
    video, audio = _times(out)
    assert len(video) == 2 * N and report["pts_discontinuities"] == 1
    assert video[N] - video[N - 1] < 0.25  # not an hour on one frame
    # the second piece's audio sits where it sat against its video, to the millisecond
    first_in = next(t for t in audio_in if t >= 3600)
    first_out = audio[next(i for i, t in enumerate(audio_in) if t >= 3600)]
    assert (video[N] - first_out) == pytest.approx(video_in[N] - first_in, abs=0.002)


def test_pieces_with_overlapping_timestamps_are_written_in_order(pieces, tmp_path):
    """Two pieces of different sizes whose timestamps overlap: the second starts 0.5 s
    before the first ends (an NVR export of two overlapping recordings). Regression: exit 8."""
    joined = _joined(pieces, tmp_path, N / 30 - 0.5)
    out = tmp_path / "out.mkv"
    report = _anonymize(joined, out, "file")
    video, audio = _times(out)
    assert len(video) == 2 * N and all(b > a for a, b in zip(video, video[1:]))
    assert all(b > a for a, b in zip(audio, audio[1:]))
    assert report["pts_discontinuities"] == 1


def test_a_live_camera_whose_clock_restarts_and_jumps_is_recorded_in_order(pieces, tmp_path):
    """A camera playing three pieces: its clock restarts at 0 (at another size), then jumps
    an hour ahead. The recording keeps every frame at the camera's spacing, never going back
    (before: frames after the restart were squeezed 1/90000 s apart), and the stream counts
    both jumps."""
    from streamguard.config import Config, StreamConfig
    from streamguard.live.stream import LiveStream

    a, b = pieces
    for name, src, shift in (("1.ts", a, 0), ("2.ts", b, 0), ("3.ts", a, 3600)):
        _shifted(src.path, tmp_path / name, shift, "mpegts")
    joined = tmp_path / "cam.ts"
    joined.write_bytes(b"".join((tmp_path / n).read_bytes() for n in ("1.ts", "2.ts", "3.ts")))
    cfg = Config().model_copy(update={"live": Config().live.model_copy(
        update={"max_queue": 100, "lookback": 3})})
    stream = LiveStream(StreamConfig(name="cam", input=str(joined), record_dir=str(tmp_path / "rec"),
                                     segment_s=600), cfg).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                stream.stats.frames_in >= 3 * N and not stream.camera.connected
                and stream.stats.frames_out >= 3 * N):
            time.sleep(0.2)
    finally:
        stream.stop()
    snap = stream.snapshot()
    assert snap["frames_in"] == 3 * N and snap["dropped"] == 0
    assert snap["pts_discontinuities"] == 2
    video, _ = _times(next((tmp_path / "rec").glob("*.mp4")))
    steps = np.diff(video[:3 * N])
    assert len(video) >= 3 * N and steps.min() > 0.02 and steps.max() < 0.3, steps.tolist()


def test_an_mkv_whose_timestamps_go_back_is_written_in_order(pieces, tmp_path):
    """Regression (exit 8): a Matroska file whose frame times go back half-way (the same
    recording appended again from 0.5 s; its decode times still rise, as a muxer demands)."""
    a = pieces[0]
    back = tmp_path / "back.mkv"
    with av.open(str(a.path)) as inp, av.open(str(back), "w") as out:
        vs = out.add_stream_from_template(inp.streams.video[0])
        vs.time_base = Fraction(1, 1000)
        packets = [(bytes(p), float(p.pts * p.time_base), p.is_keyframe)
                   for p in inp.demux(video=0) if p.dts is not None]
        for k, (start, (data, t, key)) in enumerate([(0.0, p) for p in packets]
                                                    + [(0.5, p) for p in packets]):
            packet = av.Packet(data)
            packet.stream, packet.time_base, packet.is_keyframe = vs, Fraction(1, 1000), key
            packet.pts, packet.dts = round((t + start) * 1000), k - 100  # display time goes back
            out.mux(packet)
    with av.open(str(back)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert min(b - a for a, b in zip(times, times[1:])) < -0.3  # the input does go back
    out = tmp_path / "out.mp4"
    report = _anonymize(back, out, "file")
    video, _ = _times(out)
    assert len(video) == 2 * N and all(b > a for a, b in zip(video, video[1:]))
    assert report["pts_discontinuities"] == 1
