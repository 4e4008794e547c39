"""A footage folder on a real two-node Ray cluster on loopback (`ray start` head + worker
node, separate process groups): outputs checked like the single-machine tests, a worker node
killed mid-job, a rerun that redoes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional extra streamguard[ray]")

from streamguard.config import load_config  # noqa: E402
from streamguard.batch.distributed import anonymize_on_ray  # noqa: E402
from streamguard.batch.manifest import NAME as MANIFEST  # noqa: E402
from raycluster import CLUSTER_ENV, LoopbackCluster, Node, alive_nodes, wait_nodes  # noqa: E402
from media import (  # noqa: E402
    Sprite,
    audio_packets,
    decode_rgb,
    pts_seconds,
    unprotected_faces,
    write_clip,
)

CFG = load_config(None, ["ray.segment_s=1.0", "ray.worker_start_timeout_s=60"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    loop = LoopbackCluster(tmp_path_factory.mktemp("ray-logs")).start()
    try:
        worker = loop.add_worker()
        yield {"address": loop.address, "nodes": {"head": loop.nodes[0], "worker": worker}}
    finally:
        loop.stop()


@pytest.fixture(scope="module")
def library(crops, tmp_path_factory):
    """A folder of short clips, one (4 s) long enough to be cut into segments."""
    root = tmp_path_factory.mktemp("library")
    (root / "cam2").mkdir()
    clips = [
        write_clip(root / "long.mp4", [Sprite(crops[0], 70, (10, 40), (4, 0.5)),
                                       Sprite(crops[1], 56, (520, 230), (-3, -1))],
                   width=640, height=360, n_frames=120, gop=15, preset="veryfast"),
        write_clip(root / "short.mp4", [Sprite(crops[2], 80, (100, 60), (2, 1))],
                   width=640, height=360, n_frames=30),
        write_clip(root / "cam2" / "vfr.mkv", [Sprite(crops[3], 64, (300, 100), (-2, 2))],
                   width=480, height=270, n_frames=40, vfr=True),
    ]
    return root, clips


def _pairs(root: Path, out: Path, clips) -> list[tuple[Path, Path]]:
    return [(c.path, out / c.path.relative_to(root)) for c in clips]


def _check_outputs(root: Path, out: Path, clips) -> None:
    for clip in clips:
        dst = out / clip.path.relative_to(root)
        frames, times = decode_rgb(dst)
        _, t_in = decode_rgb(clip.path)
        assert len(frames) == len(clip.frames), dst
        assert pts_seconds(times) == pts_seconds(t_in), dst
        assert audio_packets(dst) == audio_packets(clip.path) != [], dst
        assert unprotected_faces(clip, frames) == [], dst


def _cli(root: Path, out: Path, cluster, *sets: str) -> list[str]:
    """`streamguard anonymize ROOT -o OUT --ray=...` with 1 s segments and `--set`s."""
    cmd = [sys.executable, "-m", "streamguard", "anonymize", str(root), "-o", str(out),
           f"--ray={cluster['address']}", "--set", "ray.segment_s=1.0"]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_until(cmd: list[str], env: dict, path: Path) -> subprocess.Popen:
    """Start the CLI and wait until `path` exists (e.g. the manifest: one output is done).
    SIGINT is reset to its default in the child: an ignored SIGINT is inherited across exec,
    and something earlier in a full test session can leave the test process ignoring it (the
    CLI then ran to the end in the full suite while passing alone)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def _run_clean(cluster, library, out: Path, **hooks):
    """Anonymize the library on the cluster; every file must succeed. (summary, segments)"""
    root, clips = library
    parts = []
    summary = anonymize_on_ray(_pairs(root, out, clips), CFG, cluster["address"],
                               on_segment=parts.append, **hooks)
    assert [f.error for f in summary.files] == [None] * len(clips)
    return summary, parts


def test_a_folder_on_two_nodes_matches_the_single_machine_checks(cluster, library, tmp_path):
    root, clips = library
    out = tmp_path / "out"
    summary, parts = _run_clean(cluster, library, out)
    assert summary.segments == len(parts) >= 5  # the long clip was cut
    assert len({p.worker for p in parts}) == 2  # both nodes did work
    _check_outputs(root, out, clips)
    assert (out / MANIFEST).exists()


def test_the_cli_runs_on_the_cluster_and_a_rerun_redoes_nothing(cluster, library, tmp_path):
    root, clips = library
    out = tmp_path / "cli"
    cmd = [*_cli(root, out, cluster), "--report", str(tmp_path / "run.json")]
    env = {**os.environ, **CLUSTER_ENV}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "3 done, 0 skipped, 0 failed" in first.stdout
    produced = out / root.name
    _check_outputs(root, produced, clips)
    stamps = {p: p.stat().st_mtime_ns for p in produced.rglob("*.m*")}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 done, 3 skipped, 0 failed" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in produced.rglob("*.m*")} == stamps
    # an output that was changed since is not "finished": only it is done again
    victim = produced / "short.mp4"
    victim.write_bytes(victim.read_bytes()[:-100])
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert "1 done, 2 skipped, 0 failed" in third.stdout, third.stdout + third.stderr
    _check_outputs(root, produced, clips)


def test_an_interrupted_job_keeps_what_finished_and_a_rerun_does_only_the_rest(
        cluster, library, tmp_path):
    """Ctrl-C (SIGINT) once the first output is finished: exit 130, no partial output; the
    rerun skips the finished output and completes the others."""
    root, clips = library
    out = tmp_path / "int"
    cmd = _cli(root, out, cluster, "ray.workers=1")
    env = {**os.environ, **CLUSTER_ENV}
    proc = _start_until(cmd, env, out / root.name / MANIFEST)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    produced = out / root.name
    finished = {p.name for p in produced.rglob("*.m*") if p.name != MANIFEST}
    assert 1 <= len(finished) < 3  # one finished, the rest not
    assert not list(produced.rglob(".*partial*"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{3 - len(finished)} done, {len(finished)} skipped, 0 failed" in again.stdout
    _check_outputs(root, produced, clips)


def test_a_bad_file_fails_alone_with_its_error(cluster, library, tmp_path):
    root, clips = library
    lib = tmp_path / "lib"
    shutil.copytree(root, lib)
    (lib / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    out = tmp_path / "out"
    pairs = [(lib / c.path.relative_to(root), out / c.path.relative_to(root)) for c in clips]
    pairs.append((lib / "broken.mp4", out / "broken.mp4"))
    summary = anonymize_on_ray(pairs, CFG, cluster["address"])
    errors = {f.src.name: f.error for f in summary.files}
    assert "damaged or truncated" in str(errors["broken.mp4"])
    assert [e for n, e in errors.items() if n != "broken.mp4"] == [None, None, None]
    assert not (out / "broken.mp4").exists()
    assert not list(out.rglob(".*partial*"))


def test_a_node_without_model_files_does_not_stop_the_job(cluster, library, tmp_path):
    """A third node whose cache is empty (never ran `streamguard fetch`): its workers cannot
    start, the job says why in the log and completes on the two good nodes."""
    bare = Node(["--address", cluster["address"]], tmp_path / "bare.log",
                env={"STREAMGUARD_CACHE": str(tmp_path / "empty-cache")})
    try:
        wait_nodes(3)
        root, clips = library
        out = tmp_path / "out"
        summary, parts = _run_clean(cluster, library, out)
        assert len({p.worker for p in parts}) == 2  # only the good nodes did work
        _check_outputs(root, out, clips)
    finally:
        bare.kill()
        wait_nodes(2)


def test_a_file_whose_segments_do_not_add_up_is_redone_uncut(cluster, library, tmp_path,
                                                            monkeypatch):
    """A plan that miscounts a segment's frames (as packed B-frames or damaged packets
    would) makes the worker refuse it; the driver then processes that file uncut."""
    import dataclasses

    import streamguard.batch.distributed as dist
    from streamguard.batch.segments import plan_segments

    def miscounting(path, segment_s):
        plan = plan_segments(path, segment_s)
        if len(plan.segments) < 2:
            return plan
        bad = dataclasses.replace(plan.segments[1], frames=plan.segments[1].frames + 1)
        return dataclasses.replace(plan, segments=(plan.segments[0], bad, *plan.segments[2:]))

    monkeypatch.setattr(dist, "plan_segments", miscounting)
    root, clips = library
    out = tmp_path / "out"
    summary, parts = _run_clean(cluster, library, out)
    assert sorted(f.src.name for f in summary.files) == ["long.mp4", "short.mp4", "vfr.mkv"]
    long_parts = [p for p in parts if p.key.endswith("long.mp4")]
    assert long_parts[-1].frames == 120  # the uncut rerun owned every frame
    _check_outputs(root, out, clips)


def test_killing_the_worker_node_mid_job_still_completes_correctly(cluster, library,
                                                                   tmp_path):
    """Runs last: the worker node is killed (SIGKILL to its process group) while the job runs,
    as the driver sends it its second segment; what it held is rerun on the head node."""
    root, clips = library
    out = tmp_path / "out"
    node = cluster["nodes"]["worker"]
    worker_id = next(n["NodeID"] for n in ray.nodes()
                     if n["Alive"] and "node:__internal_head__" not in n["Resources"])
    sent = []

    def kill_on_second(node_id, job):
        if node_id == worker_id:
            sent.append(job.segment.index)
            if len(sent) == 2:
                node.kill()

    summary, _ = _run_clean(cluster, library, out, on_dispatch=kill_on_second)
    assert len(sent) >= 2 and node.proc.poll() is not None
    assert summary.retried >= 1  # the dead node's segments were rerun
    _check_outputs(root, out, clips)
    assert alive_nodes() == 1


def test_a_killed_driver_leaves_no_corrupt_output_and_the_rerun_completes(
        cluster, library, tmp_path):
    """SIGKILL to the driver (no cleanup possible): whatever carries a final name is a
    complete output; the rerun finishes the rest from the manifest and removes the killed
    run's temporary files."""
    root, clips = library
    out = tmp_path / "killed"
    cmd = _cli(root, out, cluster, "ray.workers=1")
    env = {**os.environ, **CLUSTER_ENV}
    proc = _start_until(cmd, env, out / root.name / MANIFEST)
    proc.kill()
    proc.communicate(timeout=60)
    produced = out / root.name
    for path in produced.rglob("*.m*"):
        if path.name != MANIFEST and not path.name.startswith("."):
            with av.open(str(path)) as c:  # every output under a final name is whole
                assert len(list(c.decode(video=0))) > 0
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    _check_outputs(root, produced, clips)
    assert not list(produced.rglob(".*partial*"))


def test_a_second_driver_on_the_same_output_folder_is_refused(cluster, library, tmp_path):
    root, clips = library
    out = tmp_path / "two"
    cmd = _cli(root, out, cluster)
    env = {**os.environ, **CLUSTER_ENV}
    first = _start_until(cmd, env, out / root.name / f"{MANIFEST}.lock")
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 8, second.stderr
    assert "another streamguard run is writing into this output folder" in second.stderr
    _check_outputs(root, out / root.name, clips)
