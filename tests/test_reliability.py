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
from media import Sprite, decode_rgb, write_clip
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


@pytest.mark.parametrize("name", ["out.jpg", "out.gif", "sub/out.png"])
def test_an_image_output_name_is_refused_and_no_folder_is_left(long_clip, tmp_path, name):
    """Regression: `-o out.jpg` was taken as a folder, and an empty folder stayed behind."""
    proc = run("anonymize", long_clip.path, "-o", tmp_path / name)
    assert_one_line_error(proc, 8, "not images or GIFs")
    assert list(tmp_path.iterdir()) == []


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
