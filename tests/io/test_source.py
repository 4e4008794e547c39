"""io/source.py on small generated media: files decode whole and timed, bad inputs are refused
with their own error, and live inputs reconnect with backoff."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from streamguard.errors import CorruptMediaError, InputNotFoundError, NotAVideoError
from streamguard.frames import Frame, Passthrough
from streamguard.io.decode import Damage
from streamguard.io.camera import Backoff, CameraSource, classify, redact
from streamguard.io.source import VideoSource, find_videos
from media import write_clip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("io") / "tiny.mp4", [], width=160, height=96,
                      n_frames=12)


def test_every_frame_decodes_with_its_pts_and_the_audio_passes_through(tiny):
    with VideoSource(tiny.path) as src:
        assert (src.info.width, src.info.height) == (160, 96)
        items = list(src.items())
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.pts for f in frames] == tiny.pts
    assert all(f.time_base == tiny.time_base for f in frames)
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    assert any(isinstance(i, Passthrough) for i in items)  # the AAC track


@pytest.mark.parametrize("content, error", [
    (None, InputNotFoundError), (b"", NotAVideoError), (b"hello, not a video\n" * 50,
                                                        NotAVideoError)])
def test_bad_inputs_are_refused_with_their_own_error(tmp_path, content, error):
    path = tmp_path / "x.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error):
        VideoSource(path).open()


def test_a_truncated_file_is_reported_not_silently_shortened(tiny, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = tiny.path.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptMediaError):
        with VideoSource(cut) as src:
            list(src.items())


def test_folders_list_their_videos_and_skip_hidden_files(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.MKV").write_bytes(b"x")
    (tmp_path / ".c.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)] == [
        "a.mp4", "sub/b.MKV"]


def test_backoff_doubles_up_to_its_maximum_and_resets():
    b = Backoff(0.5, 3.0)
    assert [b.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not b.due()
    b.reset()
    assert b.due() and b.failed() == 0.5


def test_connection_reasons_are_readable_and_never_echo_passwords():
    assert "refused" in classify(ConnectionRefusedError("Connection refused"))
    assert "credentials" in classify(OSError("401 Unauthorized"))
    assert "no such device" in classify(FileNotFoundError("No such file or directory"))
    assert "s3cr3t" not in classify(OSError("rtsp://u:s3cr3t@h/x: odd failure"))
    assert redact("rtsp://u:s3cr3t@h:554/x") == "rtsp://u:***@h:554/x"


def test_a_file_camera_plays_in_real_time_and_reports_its_audio(tiny):
    cam = CameraSource(str(tiny.path), 2.0, Backoff(0.1, 0.2))
    got, audio, connects = [], [], []
    start = time.monotonic()
    cam.run(threading.Event(), connects.append, lambda vf: got.append(vf.pts),
            lambda p: audio.append(p))
    took = time.monotonic() - start
    assert len(got) == 12 and len(connects) == 1 and connects[0] is not None and audio
    assert took >= 11 / 30 * 0.9  # paced: 12 frames at 30 fps span 11 intervals
    assert not cam.connected and cam.reconnects == 0


def test_a_missing_input_keeps_retrying_with_backoff_until_stopped(tmp_path):
    cam = CameraSource("/dev/video99", 1.0, Backoff(0.05, 0.1), name="door")
    stop = threading.Event()
    t = threading.Thread(target=cam.run, args=(stop, print, print, print))
    t.start()
    deadline = time.monotonic() + 10
    while cam.reconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(5)
    assert not t.is_alive() and cam.reconnects >= 3
    assert "no such device" in cam.last_error


def test_pts_travel_as_fractions_of_the_stream_time_base(tiny):
    with VideoSource(tiny.path) as src:
        first = next(i for i in src.items() if isinstance(i, Frame))
    assert isinstance(first.time_base, Fraction) and first.time == 0.0


def test_a_camera_that_accepts_but_never_sends_is_a_stall_and_reconnects():
    """A stalled camera keeps its TCP connection open and sends nothing: the input must give
    up after stall_timeout_s, say so, and keep retrying, never hang."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # keep it open, say nothing

    threading.Thread(target=accept, daemon=True).start()
    cam = CameraSource(f"rtsp://127.0.0.1:{port}/cam", 1.0, Backoff(0.1, 0.2), name="door")
    stop = threading.Event()
    t = threading.Thread(target=cam.run, args=(stop, print, print, print))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while cam.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cam.reconnects >= 2 and len(held) >= 2
        assert "stalled" in cam.last_error
    finally:
        stop.set()
        t.join(10)
        server.close()
        for conn in held:
            conn.close()
    assert not t.is_alive()


def test_damage_runs_from_a_patched_frame_to_the_next_intact_keyframe():
    """Frames predicted from a patched picture carry its smears: they are damaged too, until
    a keyframe the decoder did not have to patch; a stream without keyframes is not damaged
    for good."""
    from types import SimpleNamespace

    def frames(kinds: str):
        return [SimpleNamespace(key_frame=k in "KX", is_corrupt=k in "CX") for k in kinds]

    damage = Damage()
    assert [damage(f) for f in frames("K..C..X..K..")] == [False] * 3 + [True] * 6 + [False] * 3
    live = Damage(start_damaged=True)  # a decoder joined mid-stream: damaged until a keyframe
    assert [live(f) for f in frames("..K.")] == [True, True, False, False]
    skipped = Damage()
    skipped.lost()  # a packet skipped before the decoder saw it
    assert [skipped(f) for f in frames(".K")] == [True, False]
    endless = Damage()
    flags = [endless(f) for f in frames("C" + "." * (Damage.MAX_RUN + 5))]
    assert all(flags[:Damage.MAX_RUN]) and not any(flags[Damage.MAX_RUN:])
