"""The command line as a user meets it: real processes, one-line errors, distinct exit codes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamguard import __version__
from media import Sprite, decode_rgb, write_clip


def run(*args, cwd=None):
    env = dict(os.environ)
    env.pop("STREAMGUARD_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "streamguard", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def assert_one_line_error(proc, code, *fragments):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("streamguard: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def no_outputs_left(folder: Path):
    return [p.name for p in folder.rglob("*") if "anonymized" in p.name or "partial" in p.name
            or p.name.startswith("out")]


@pytest.fixture(scope="module")
def small_clip(crops, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_in")
    return write_clip(folder / "walk.mp4", [Sprite(crops[0], 100, (60, 40), (3, 1))],
                      width=640, height=360, n_frames=15)


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"streamguard {__version__}"


def test_missing_file(tmp_path):
    assert_one_line_error(run("anonymize", tmp_path / "nope.mp4"), 3, "nope.mp4")


def test_folder_without_videos(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run("anonymize", tmp_path), 4, "no video files")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    proc = run("anonymize", tmp_path / "empty.mp4", "-o", tmp_path / "out.mp4")
    assert_one_line_error(proc, 5, "empty file")
    assert no_outputs_left(tmp_path) == []


def test_not_a_video(tmp_path):
    (tmp_path / "letter.mp4").write_text("Dear user, this is text.\n" * 50)
    proc = run("anonymize", tmp_path / "letter.mp4", "-o", tmp_path / "out.mp4")
    assert_one_line_error(proc, 5, "not a video")
    assert no_outputs_left(tmp_path) == []


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 48000
        out.mux(a.encode(frame))
        out.mux(a.encode(None))
    assert_one_line_error(run("anonymize", path, "-o", tmp_path / "out.mp4"), 5, "no video stream")


@pytest.mark.parametrize("cut", ["tail", "middle"])
def test_truncated_mp4(small_clip, tmp_path, cut):
    data = small_clip.path.read_bytes()
    blob = data[: int(len(data) * 0.6)] if cut == "tail" else data[:4000]
    src = tmp_path / "cut.mp4"
    src.write_bytes(blob)
    proc = run("anonymize", src, "-o", tmp_path / "out.mp4")
    assert_one_line_error(proc, 6)
    assert no_outputs_left(tmp_path) == []


def test_unsupported_codec(crops, tmp_path):
    clip = write_clip(tmp_path / "x.avi", [Sprite(crops[0], 60, (10, 10), (1, 0))], width=160,
                      height=120, n_frames=5, codec="mpeg4", audio=False)
    src = tmp_path / "weird.avi"
    src.write_bytes(clip.path.read_bytes().replace(b"FMP4", b"QQZZ"))  # an unknown FourCC
    assert_one_line_error(run("anonymize", src, "-o", tmp_path / "out.avi"), 7, "no decoder")


def test_unwritable_output(small_clip, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    proc = run("anonymize", small_clip.path, "-o", blocker / "out.mp4")
    assert_one_line_error(proc, 8, "cannot write")


def test_output_must_not_overwrite_the_input(small_clip):
    proc = run("anonymize", small_clip.path, "-o", small_clip.path)
    assert_one_line_error(proc, 8, "overwrite the input")


def test_unknown_config_key_is_named(small_clip, tmp_path):
    proc = run("anonymize", small_clip.path, "-o", tmp_path / "o.mp4", "--set", "detect.tilez=2")
    assert_one_line_error(proc, 2, "detect.tilez")


def test_a_detection_schedule_without_look_back_is_refused(small_clip, tmp_path):
    proc = run("anonymize", small_clip.path, "-o", tmp_path / "o.mp4", "--set", "detect.every=3",
               "--set", "track.lookback=1")
    assert_one_line_error(proc, 2, "track.lookback")
    assert not (tmp_path / "o.mp4").exists()


def test_adversarial_mode_refuses_rather_than_pretends(small_clip, tmp_path, monkeypatch):
    """Missing weights: a clear error and no output, never a silent fall back to a bare mosaic."""
    monkeypatch.setenv("STREAMGUARD_WEIGHTS", str(tmp_path / "no-weights"))
    proc = run("anonymize", small_clip.path, "-o", tmp_path / "o.mp4",
               "--mode", "adversarial-identity")
    assert_one_line_error(proc, 9, "no shipped weights")
    assert not (tmp_path / "o.mp4").exists()


def test_anonymize_a_folder_mirrors_it_and_writes_a_report(small_clip, tmp_path):
    src = tmp_path / "footage"
    (src / "day1").mkdir(parents=True)
    (src / "day1" / "cam.mp4").write_bytes(small_clip.path.read_bytes())
    (src / "top.mp4").write_bytes(small_clip.path.read_bytes())
    (src / "readme.txt").write_text("not a video")
    out = tmp_path / "protected"
    proc = run("anonymize", src, "-o", out, "--report", tmp_path / "run.json", "--blocks", "6")
    assert proc.returncode == 0, proc.stderr
    assert (out / "footage" / "day1" / "cam.mp4").is_file()
    assert (out / "footage" / "top.mp4").is_file()
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["totals"]["files"] == 2 and report["totals"]["frames"] == 30
    rec = report["files"][0]
    for key in ("frames", "faces_per_frame", "tracks", "failed_closed", "stage_busy_s", "fps"):
        assert key in rec
    assert rec["tracks"] >= 1 and rec["faces"] >= 14
    frames, _ = decode_rgb(out / "footage" / "top.mp4")
    assert len(frames) == 15


def test_default_output_name_sits_next_to_the_input(small_clip, tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(small_clip.path.read_bytes())
    proc = run("anonymize", src, "--mode", "blur")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "clip_anonymized.mp4").is_file()


def test_one_bad_file_in_a_batch_does_not_stop_the_others(small_clip, tmp_path):
    src = tmp_path / "batch"
    src.mkdir()
    (src / "good.mp4").write_bytes(small_clip.path.read_bytes())
    (src / "bad.mp4").write_bytes(b"")
    proc = run("anonymize", src, "-o", tmp_path / "o")
    assert proc.returncode == 5
    assert (tmp_path / "o" / "batch" / "good.mp4").is_file()
    assert not (tmp_path / "o" / "batch" / "bad.mp4").exists()
    assert "empty file" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_without_the_extra_says_how_to_install_it(small_clip, tmp_path):
    """Simulates a machine without Ray: `import ray` fails in the child process."""
    code = ("import sys; sys.modules['ray'] = None; from streamguard.cli import main; "
            f"raise SystemExit(main(['anonymize', {str(small_clip.path)!r}, '-o', "
            f"{str(tmp_path / 'o.mp4')!r}, '--ray']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert_one_line_error(proc, 12, "pip install 'streamguard[ray]'")
    assert not (tmp_path / "o.mp4").exists()


def test_ray_with_an_unreachable_cluster_is_a_clear_error(small_clip, tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    proc = run("anonymize", small_clip.path, "-o", tmp_path / "o.mp4", f"--ray=127.0.0.1:{port}")
    assert proc.returncode == 13, proc.stderr
    assert "cannot connect to the Ray cluster" in proc.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_ray_workers_without_model_files_say_so(small_clip, tmp_path):
    """A local cluster whose workers find no model files: the job stops with the model error
    (exit 9), not a hang or a Ray traceback."""
    pytest.importorskip("ray")
    env = dict(os.environ, STREAMGUARD_CACHE=str(tmp_path / "empty"), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize", str(small_clip.path),
                           "-o", str(tmp_path / "o.mp4"), "--ray=local"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 9, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("streamguard: error: ")
    assert "streamguard fetch" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o.mp4").exists()


def test_an_output_folder_inside_the_input_folder_is_not_read_back_as_input(small_clip,
                                                                           tmp_path):
    """Regression: `anonymize footage/ -o footage/protected` run twice used to anonymize the
    first run's outputs as new inputs."""
    footage = tmp_path / "footage"
    footage.mkdir()
    (footage / "walk.mp4").write_bytes(small_clip.path.read_bytes())
    for _ in range(2):
        proc = run("anonymize", footage, "-o", footage / "protected", "--no-progress")
        assert proc.returncode == 0, proc.stderr
    outputs = sorted(p.relative_to(footage) for p in footage.rglob("*.mp4"))
    assert outputs == [Path("protected/footage/walk.mp4"), Path("walk.mp4")]


def test_a_fresh_shell_finds_the_checkouts_models(small_clip, tmp_path):
    """Regression: after `make demo`, `streamguard anonymize` in a new shell (no
    STREAMGUARD_CACHE, an empty ~/.cache) said the models were not in the cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STREAMGUARD_CACHE", "XDG_CACHE_HOME", "STREAMGUARD_DEBUG")}
    env["HOME"] = str(tmp_path / "home")
    out = tmp_path / "o.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize",
                           str(small_clip.path), "-o", str(out)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    code = ("import numpy as np, streamguard; "
            "print(streamguard.anonymize_frame(np.zeros((64, 64, 3), np.uint8)).shape)")
    lib = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert lib.returncode == 0 and "(64, 64, 3)" in lib.stdout, lib.stderr


def test_doctor_lists_what_a_run_needs_and_fails_when_models_are_missing(tmp_path):
    ok = run("doctor")
    assert ok.returncode == 0, ok.stderr
    assert "ok       face_detection_full_range_sparse.tflite" in ok.stdout
    assert "ok       blockwise_identity" in ok.stdout and "config: mode" in ok.stdout
    env = {k: v for k, v in os.environ.items() if k != "STREAMGUARD_DEBUG"}
    env["STREAMGUARD_CACHE"] = str(tmp_path / "empty")
    bad = subprocess.run([sys.executable, "-m", "streamguard", "doctor"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert_one_line_error(bad, 9, "missing or corrupt", "streamguard fetch")
    assert "missing  face_detection_full_range_sparse.tflite" in bad.stdout


def test_a_cache_fetched_before_the_night_model_says_to_fetch(small_clip, tmp_path):
    """A cache filled before CenterFace joined the model files (detect.night_model): a run
    stops with one line naming the file and `streamguard fetch`, and writes no output."""
    from streamguard.assets import cache_dir

    old = tmp_path / "old-cache"
    shutil.copytree(cache_dir(), old, ignore=shutil.ignore_patterns("centerface*"))
    env = {k: v for k, v in os.environ.items() if k != "STREAMGUARD_DEBUG"}
    env["STREAMGUARD_CACHE"] = str(old)
    out = tmp_path / "o.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize",
                           str(small_clip.path), "-o", str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert_one_line_error(proc, 9, "centerface.onnx", "streamguard fetch")
    assert not out.exists()


def test_an_unknown_night_model_is_refused(small_clip, tmp_path):
    proc = run("anonymize", small_clip.path, "-o", tmp_path / "o.mp4",
               "--set", 'detect.night_model="yolo"')
    assert_one_line_error(proc, 2, "detect.night_model")
    assert not (tmp_path / "o.mp4").exists()


def test_json_logs_keep_errors_one_line(tmp_path):
    proc = run("--log-format", "json", "anonymize", tmp_path / "nope.mp4")
    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    doc = json.loads(lines[0])
    assert doc["level"] == "error" and "nope.mp4" in doc["message"]


def test_json_logs_carry_warnings_as_objects(small_clip, tmp_path):
    """A run's warnings (here: a GIF output leaves the audio out) are JSON objects, one per
    line, with time, level and logger."""
    proc = run("--log-format", "json", "anonymize", small_clip.path, "-o", tmp_path / "o.gif")
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.strip()]
    assert docs and all({"time", "level", "logger", "message"} <= set(d) for d in docs)
    assert any(d["level"] == "warning" and "audio" in d["message"] for d in docs)


def test_progress_is_a_bar_on_a_terminal_and_log_lines_elsewhere(caplog):
    import io
    import logging

    from streamguard.progress import Progress

    term = io.StringIO()
    bar = Progress("walk.mp4", stream=term, tty=True)
    for done in (10, 20, 30):
        bar.update(done, 60)
    bar.close()
    assert "walk.mp4" in term.getvalue() and "30/60" in term.getvalue()
    pipe = io.StringIO()
    with caplog.at_level(logging.INFO, logger="streamguard.progress"):
        lines = Progress("walk.mp4", stream=pipe, tty=False, every_s=0.0)
        lines.update(30, 60, "1/2 files")
        lines.close()
    assert pipe.getvalue() == ""  # no carriage-return junk in a log
    assert any("walk.mp4: 30/60 frames" in r.getMessage() and "1/2 files" in r.getMessage()
               for r in caplog.records)
    quiet = io.StringIO()
    off = Progress("walk.mp4", enabled=False, stream=quiet, tty=True)
    off.update(1, 2)
    off.close()
    assert quiet.getvalue() == ""


def test_the_codec_floor_benchmark_without_its_files_says_how_to_run_it():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "codec_floor.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "usage: python benchmarks/codec_floor.py INPUT OUTPUT"


@pytest.mark.parametrize("repeat", ["0", "-2", "two"])
def test_the_pipeline_benchmark_refuses_a_repeat_count_under_one_in_one_line(repeat):
    """`--repeat N` alternates the variants N times and reports each one's median round: a
    count under one (nothing to take a median of) is a usage error, not a traceback."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline.py"
    proc = subprocess.run([sys.executable, str(script), "--repeat", repeat],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"pipeline.py: error: argument --repeat: needs a whole number of 1 or more, "
        f"not '{repeat}'")
