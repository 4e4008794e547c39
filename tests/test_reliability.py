"""Faults from outside: concurrent runs, signals, mid-stream size changes, unwritable and
unsupported outputs. Each test pins a bug found by probing the CLI as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamguard.config import EncodeConfig
from streamguard.errors import OutputError
from streamguard.io.sink import VideoSink
from streamguard.io.source import VideoSource
from media import Sprite, decode_rgb, detail_similarity, write_clip
from test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def long_clip(crops, tmp_path_factory):
    """Long enough (10 s of 720p) that a run is still going when the test acts."""
    folder = tmp_path_factory.mktemp("rel_in")
    return write_clip(folder / "long.mp4", [Sprite(crops[0], 120, (100, 100), (2, 1))],
                      n_frames=300)


def _start(*args) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("STREAMGUARD_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "streamguard", *map(str, args),
                             "--set", 'protect.mode="mosaic"'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_partial(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has written into its temporary output (it is mid-run)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in folder.glob(".*partial*")):
            return
        time.sleep(0.05)
    pytest.fail("the run never started writing")


def test_a_second_run_on_the_same_output_is_refused_not_mixed(long_clip, tmp_path):
    """Regression: two runs writing one output shared a temporary name; one reported success
    over a file holding a mix of both clips (69 packet errors), the other exited 70."""
    out = tmp_path / "o.mp4"
    first = _start("anonymize", long_clip.path, "-o", out, "--no-progress")
    try:
        _wait_for_partial(tmp_path, first)
        second = run("anonymize", long_clip.path, "-o", out, "--no-progress")
        assert_one_line_error(second, 8, "another streamguard run is writing this output")
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    frames, _ = decode_rgb(out)
    assert len(frames) == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no temp, no lock left


def test_the_output_lock_is_released_so_a_later_run_may_overwrite(long_clip, tmp_path):
    out = tmp_path / "o.mp4"
    with VideoSource(long_clip.path) as src:
        with VideoSink(out, src.info, EncodeConfig()) as first:
            with pytest.raises(OutputError, match="another streamguard run"):
                VideoSink(out, src.info, EncodeConfig())
            first.abort()
        VideoSink(out, src.info, EncodeConfig()).abort()  # free again


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_run_and_leave_nothing(long_clip, tmp_path, sig, code):
    """Regression: only SIGINT was handled; SIGTERM (timeout, docker stop, systemd, Ray)
    left `.o.partial.mp4` behind and printed nothing."""
    out = tmp_path / "o.mp4"
    proc = _start("anonymize", long_clip.path, "-o", out, "--no-progress")
    _wait_for_partial(tmp_path, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"streamguard: stopped by {signal.Signals(sig).name}; no partial output "
                     "was kept"]
    assert list(tmp_path.iterdir()) == []


def _segment(path: Path, width: int, height: int, n: int, start: int) -> None:
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            image = np.full((height, width, 3), (40 + 3 * i) % 255, np.uint8)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts, vf.time_base = (start + i) * 3000, Fraction(1, 90000)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))


@pytest.mark.parametrize("sizes", [((640, 360), (1280, 720)), ((1280, 720), (640, 360))])
def test_a_resolution_change_mid_stream_is_rescaled_to_the_first_size(tmp_path, sizes):
    """Regression: a 360p segment followed by a 720p one in a .ts (or the reverse) ended with
    exit 10 ('index can't contain negative values') or exit 8."""
    a, b = tmp_path / "a.ts", tmp_path / "b.ts"
    _segment(a, *sizes[0], 30, 0)
    _segment(b, *sizes[1], 30, 35)  # clear of the first part's last (B-frame shifted) pts
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())  # MPEG-TS concatenates byte-wise
    out = tmp_path / "out.mp4"
    proc = run("anonymize", joined, "-o", out, "--report", tmp_path / "r.json",
               "--set", 'protect.mode="mosaic"')
    assert proc.returncode == 0, proc.stderr
    frames, _ = decode_rgb(out)
    assert len(frames) == 60
    assert all(f.shape == (sizes[0][1], sizes[0][0], 3) for f in frames)
    import json

    report = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert report["frames_rescaled"] == 30


@pytest.mark.parametrize("target", ["/proc/x.mp4", "/proc/x.mkv"])
def test_an_unwritable_output_says_cannot_write(long_clip, target):
    """Regression: `-o /proc/x.mp4` was reported as 'the .mp4 container cannot hold these
    streams ... try .mkv' (even for .mkv), after the models had loaded."""
    proc = run("anonymize", long_clip.path, "-o", target)
    assert_one_line_error(proc, 8, "cannot write")
    assert "container" not in proc.stderr


@pytest.mark.parametrize("name", ["out.jpg", "sub/out.png"])
def test_a_still_image_output_for_a_video_is_refused_and_no_folder_is_left(long_clip, tmp_path,
                                                                          name):
    """Regression: `-o out.jpg` was taken as a folder, and an empty folder stayed behind."""
    proc = run("anonymize", long_clip.path, "-o", tmp_path / name)
    assert_one_line_error(proc, 8, "a still image holds one frame")
    assert list(tmp_path.iterdir()) == []


def test_an_image_in_gives_an_image_out_with_the_face_protected(tmp_path):
    """Regression: image inputs with default naming always failed (exit 8)."""
    import cv2

    from media import PROTECTED, load_rgb

    photo = tmp_path / "photo.jpg"
    image = load_rgb("obama.jpg")
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    proc = run("anonymize", photo)
    assert proc.returncode == 0, proc.stderr
    out = cv2.cvtColor(cv2.imread(str(tmp_path / "photo_anonymized.jpg")), cv2.COLOR_BGR2RGB)
    assert out.shape == image.shape
    from streamguard.detect.mediapipe import BlazeFace

    model = BlazeFace("full_range", 0.5)
    try:
        (x0, y0, x1, y1), = model(image)[0].astype(int)[:1]
    finally:
        model.close()
    core = (slice(y0 + (y1 - y0) // 5, y1 - (y1 - y0) // 5),
            slice(x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5))
    assert detail_similarity(image[core], out[core]) < PROTECTED
    assert run("anonymize", photo, "-o", tmp_path / "x.png").returncode == 0
    assert cv2.imread(str(tmp_path / "x.png")).shape == image.shape


def test_a_video_to_gif_keeps_every_frame_and_leaves_the_audio_out(long_clip, tmp_path):
    out = tmp_path / "clip.gif"
    proc = run("anonymize", long_clip.path, "-o", out, "--set", 'protect.mode="mosaic"')
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) == 300 and not c.streams.audio


def test_a_run_failing_midway_removes_the_folders_it_created(long_clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = long_clip.path.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = run("anonymize", cut, "-o", tmp_path / "new" / "deeper" / "o.mp4",
               "--set", 'protect.mode="mosaic"')
    assert proc.returncode == 6, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


def test_a_bad_argument_is_one_line():
    """Regression: an argparse error printed 7 lines (usage and all)."""
    proc = run("anonymize", "--blocks", "many", "x.mp4")
    assert_one_line_error(proc, 2, "--blocks", "invalid int value")


@pytest.fixture(scope="module")
def damaged_clip(crops, tmp_path_factory):
    """72 frames, one packet in the middle with its first 20 bytes flipped (the decoder
    refuses it)."""
    folder = tmp_path_factory.mktemp("damaged")
    clip = write_clip(folder / "clip.mp4", [Sprite(crops[0], 100, (60, 40), (3, 1))],
                      width=640, height=360, n_frames=72)
    with av.open(str(clip.path)) as c:
        packet = [p for p in c.demux(video=0) if p.size][30]
    data = bytearray(clip.path.read_bytes())
    for k in range(20):
        data[packet.pos + k] ^= 0xFF
    bad = folder / "bad.mp4"
    bad.write_bytes(bytes(data))
    return clip, bad


def test_a_damaged_packet_fails_the_file_by_default(damaged_clip, tmp_path):
    proc = run("anonymize", damaged_clip[1], "-o", tmp_path / "o.mp4")
    assert_one_line_error(proc, 6, "decoding failed")
    assert list(tmp_path.iterdir()) == []


def test_on_corrupt_skip_keeps_the_frames_that_decode_all_protected(damaged_clip, tmp_path):
    """Regression: one bad packet aborted the whole file (71 of 72 frames decodable), with no
    way to salvage the rest."""
    import json

    from media import unprotected_faces

    clip, bad = damaged_clip
    out = tmp_path / "o.mp4"
    proc = run("anonymize", bad, "-o", out, "--on-corrupt", "skip", "--report",
               tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    assert "damaged by lost video data" in proc.stdout
    frames, _ = decode_rgb(out)
    report = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert report["packets_skipped"] >= 1 and 40 <= len(frames) < 72
    assert report["frames_written"] == len(frames)
    # the frames kept are the clip's own from the start on; every face in them protected
    assert unprotected_faces(clip, frames[:30]) == []
    # the frames predicted from the lost keyframe (smeared ghosts of the face) up to the next
    # keyframe are protected whole (protect.damaged = "frame"), and counted
    damaged = report["frames_damaged"]
    assert damaged >= 10 and report["failed_closed"] == damaged
    original, _ = decode_rgb(clip.path)
    for image in frames[30:30 + damaged]:  # no frame detail left anywhere
        assert detail_similarity(image[:, 320:], original[0][:, 320:]) < 0.2


def test_a_full_disk_fails_with_a_clear_error_and_leaves_nothing(long_clip, tmp_path):
    """ENOSPC-like: the output may not grow past 200 kB (RLIMIT_FSIZE; SIGXFSZ ignored so the
    write fails with EFBIG as on a full disk)."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    env = dict(os.environ)
    env.pop("STREAMGUARD_DEBUG", None)
    out = tmp_path / "out" / "o.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize", str(long_clip.path),
                           "-o", str(out), "--set", 'protect.mode="mosaic"'],
                          capture_output=True, text=True, env=env, preexec_fn=limit, timeout=300)
    assert_one_line_error(proc, 8, "writing failed")
    assert list(tmp_path.iterdir()) == []


def test_8k_frames_get_short_queues_and_run(tmp_path):
    """8K frames are 100 MB each: the queues between stages shrink to the memory budget
    instead of holding 8 each (24 frames = 2.4 GB), and the run completes."""
    from streamguard.config import Config, PipelineConfig
    from streamguard.pipeline import anonymize_file, queue_frames

    assert queue_frames(PipelineConfig(), 1920, 1080) == 8
    assert queue_frames(PipelineConfig(), 7680, 4320) == 3
    assert queue_frames(PipelineConfig(memory_mb=64), 7680, 4320) == 1
    clip = tmp_path / "8k.mp4"
    with av.open(str(clip), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 7680, 4320, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast"}
        for i in range(3):
            vf = av.VideoFrame.from_ndarray(np.full((4320, 7680, 3), 60 * i, np.uint8),
                                            format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 30)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    cfg = Config().model_copy(update={"protect": Config().protect.model_copy(
        update={"mode": "mosaic"})})
    report = anonymize_file(clip, tmp_path / "out.mp4", cfg)
    assert report.frames_written == 3


def test_a_successful_run_prints_no_third_party_noise(long_clip, tmp_path):
    """Regression: MediaPipe/LiteRT printed 'WARNING: Logging before InitGoogle()' and
    'Input tensor memory is not aligned' at the first tile or window of a new shape, in the
    middle of a run (and broke the one-line error of a failing one)."""
    proc = run("anonymize", long_clip.path, "-o", tmp_path / "o.mp4", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
