"""A seeded mutator for media files and the check every mutant must pass.

Mutations: byte flips, truncation at a random point, dropped or duplicated video packets,
a wrong duration in the container header, a damaged audio stream. The check runs
`streamguard anonymize` on the mutant and asserts what a user must always get: an exit code
streamguard documents, within a time bound, no traceback, no partial file, and, when a file
was written, every face a detector finds in an input frame protected in the output frame of
the same timestamp (its fine detail gone).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from media import PROTECTED, detail_similarity

DOCUMENTED_EXITS = {0, 5, 6, 7}  # done, not a video, damaged/truncated, unsupported codec
TIME_LIMIT_S = 120


def _remux(src: Path, dst: Path, rng: np.random.Generator, mode: str) -> None:
    """Copy the packets into a new file, dropping / duplicating some video packets."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is None:
                continue
            video = packet.stream.type == "video"
            packet.stream = streams[packet.stream.index]
            if video and mode == "drop" and rng.random() < 0.15:
                continue
            out.mux(packet)
            if video and mode == "duplicate" and rng.random() < 0.15:
                twin = av.Packet(bytes(packet))
                twin.stream, twin.time_base = packet.stream, packet.time_base
                twin.pts = twin.dts = None  # a packet with no timing of its own
                try:
                    out.mux(twin)
                except (av.error.FFmpegError, ValueError):
                    pass  # the muxer refused the twin: the mutant is just a little saner


def _patch_duration(data: bytearray, rng: np.random.Generator) -> None:
    """Overwrite the movie header's duration (mvhd) with a random value."""
    at = data.find(b"mvhd")
    if at < 0:
        return
    version = data[at + 4]
    offset = at + 4 + 4 + (16 if version == 1 else 8) + 4
    size = 8 if version == 1 else 4
    data[offset:offset + size] = int(rng.integers(0, 2 ** (8 * size - 1))).to_bytes(size, "big")


def _damage_audio(src: Path, data: bytearray, rng: np.random.Generator) -> None:
    with av.open(str(src)) as c:
        if not c.streams.audio:
            return
        spots = [(p.pos, p.size) for p in c.demux(audio=0) if p.pos and p.size]
    for pos, size in [spots[i] for i in rng.choice(len(spots), min(5, len(spots)), False)]:
        for k in rng.choice(size, min(size, 12), replace=False):
            data[pos + int(k)] ^= 0xFF


MUTATIONS = ("flip", "truncate", "drop", "duplicate", "duration", "audio")


def mutate(src: Path, dst: Path, kind: str, seed: int) -> None:
    """Write a mutant of `src` to `dst`."""
    rng = np.random.default_rng(seed)
    if kind in ("drop", "duplicate"):
        _remux(src, dst, rng, kind)
        return
    data = bytearray(src.read_bytes())
    if kind == "flip":
        for pos in rng.integers(0, len(data), int(rng.integers(1, 40))):
            data[int(pos)] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        data = data[: int(rng.integers(1, len(data)))]
    elif kind == "duration":
        _patch_duration(data, rng)
    elif kind == "audio":
        _damage_audio(src, data, rng)
    dst.write_bytes(bytes(data))


def _frames(path: Path) -> dict[int, np.ndarray]:
    """pts -> RGB frame of whatever decodes (damaged packets skipped)."""
    frames = {}
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        try:
            for packet in c.demux(video):
                try:
                    for vf in packet.decode():
                        if vf.pts is not None:
                            frames[vf.pts] = vf.to_ndarray(format="rgb24")
                except av.error.FFmpegError:
                    continue
        except av.error.FFmpegError:
            pass  # the rest of the file cannot be read: compare what was
    return frames


def faces_in_output(src: Path, out: Path, detector) -> list[tuple[int, list[int], float]]:
    """For every face the detector finds in an input frame: (pts, box, how much of its
    fine detail the output frame with the same pts still shows; <= PROTECTED: protected)."""
    inputs, outputs = _frames(src), _frames(out)
    found = []
    for pts, out_frame in outputs.items():
        frame = inputs.get(pts)
        if frame is None or frame.shape != out_frame.shape:
            continue
        xyxy, score = detector(frame)
        for (x0, y0, x1, y1), sc in zip(xyxy.astype(int), score):
            if sc < 0.6:
                continue
            # the face's core: well inside the box, on the frame
            w, h = x1 - x0, y1 - y0
            a0, b0 = max(x0 + w // 5, 0), max(y0 + h // 5, 0)
            a1, b1 = min(x1 - w // 5, frame.shape[1]), min(y1 - h // 5, frame.shape[0])
            if a1 - a0 < 8 or b1 - b0 < 8:
                continue
            kept = detail_similarity(frame[b0:b1, a0:a1], out_frame[b0:b1, a0:a1])
            found.append((pts, [int(x0), int(y0), int(x1), int(y1)], kept))
    return found


def check_mutant(path: Path, out_dir: Path, detector) -> tuple[int, str]:
    """Run the CLI on a mutant and assert the promises; returns (exit code, stderr)."""
    out = out_dir / "out.mp4"
    env = dict(os.environ)
    env.pop("STREAMGUARD_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "streamguard", "anonymize", str(path), "-o",
                           str(out), "--on-corrupt", "skip", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=TIME_LIMIT_S)
    err = proc.stderr
    assert proc.returncode in DOCUMENTED_EXITS, (proc.returncode, err)
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("streamguard: error")]
    assert len(errors) == (proc.returncode != 0), err
    assert not [p.name for p in out_dir.iterdir() if p.name != "out.mp4"], "partial file left"
    if proc.returncode == 0:
        for pts, face, kept in faces_in_output(path, out, detector):
            assert kept <= PROTECTED, f"{path.name}: the face at {face} (pts {pts}) is bare"
        out.unlink()
    else:
        assert not out.exists()
    return proc.returncode, err
