"""Batch bookkeeping without a cluster: the manifest that makes reruns skip finished work,
and how `--ray` finds its cluster."""

from __future__ import annotations

import os

import pytest

from streamguard.config import load_config
from streamguard.batch.cluster import resolve_address
from streamguard.errors import ClusterError
from streamguard.batch.manifest import NAME, Manifest

CFG = load_config(None, [])


@pytest.fixture
def done(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out" / "in.mp4"
    src.write_bytes(b"input video bytes")
    dst.parent.mkdir()
    dst.write_bytes(b"protected output bytes")
    Manifest(dst.parent, CFG).record(src, dst, frames=10)
    return src, dst


def test_a_recorded_output_is_finished_for_a_new_run(done):
    src, dst = done
    assert (dst.parent / NAME).exists()
    assert Manifest(dst.parent, CFG).finished(src, dst)


@pytest.mark.parametrize("change", ["input", "output", "output_deleted", "settings"])
def test_any_change_means_not_finished(done, change):
    src, dst = done
    cfg = CFG
    if change == "input":
        src.write_bytes(b"input video bytez")  # same size, other bytes
    elif change == "output":
        dst.write_bytes(b"protected output bytez")
    elif change == "output_deleted":
        dst.unlink()
    else:
        cfg = load_config(None, ["protect.blocks=6"])
    assert not Manifest(dst.parent, cfg).finished(src, dst)


def test_a_touched_but_identical_file_is_still_finished_and_unchanged_ones_are_not_rehashed(
        done, monkeypatch):
    src, dst = done
    os.utime(src)  # new mtime, same bytes: hashed, still finished
    assert Manifest(dst.parent, CFG).finished(src, dst)
    manifest = Manifest(dst.parent, CFG)
    manifest.record(src, dst, frames=10)
    import streamguard.batch.manifest as m

    monkeypatch.setattr(m, "sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    assert manifest.finished(src, dst)  # size and mtime as recorded: no re-read


def test_settings_that_do_not_change_pixels_keep_outputs_finished(done):
    src, dst = done
    cfg = load_config(None, ["ray.segment_s=10", "pipeline.queue_size=4"])
    assert Manifest(dst.parent, cfg).finished(src, dst)


def test_an_unreadable_manifest_means_everything_is_done_again(done):
    src, dst = done
    (dst.parent / NAME).write_text("{not json")
    assert not Manifest(dst.parent, CFG).finished(src, dst)


def test_ray_address_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert resolve_address(None) == "local"
    assert resolve_address("10.0.0.2:6379") == "10.0.0.2:6379"
    with pytest.raises(ClusterError, match="no Ray cluster runs here"):
        resolve_address("auto")
    (tmp_path / "ray_current_cluster").write_text("10.0.0.3:6379\n")
    assert resolve_address("auto") == "10.0.0.3:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.4:6379")
    assert resolve_address(None) == resolve_address("auto") == "10.0.0.4:6379"
