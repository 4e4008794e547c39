"""A seeded mutator for media files and the check every mutant must pass.

Mutations: byte flips, truncation at a random point, dropped or duplicated video packets,
a wrong duration in the container header, a damaged audio stream; and what cameras and NVRs
write: MPEG-TS pieces joined byte-wise (restarting at 0 at another size, jumping an hour
ahead, overlapping, or switching to H.265), a TS whose PAT/PMT are lost for a while, a
broken `moov`, a fragmented MP4 cut mid-fragment, B-frames lost. The check runs
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

from fractions import Fraction

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


def _to_ts(src: Path, dst: Path, shift_s: float = 0.0, codec: str | None = None,
           size: tuple[int, int] | None = None) -> None:
    """`src` as MPEG-TS, its timestamps moved by `shift_s`; re-encoded with `codec` (at
    `size`) when given, else its packets copied."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        if codec is None:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                       if s.type in ("video", "audio")}
            for packet in inp.demux(*[inp.streams[i] for i in streams]):
                if packet.dts is None:
                    continue
                d = round(shift_s / packet.time_base)
                packet.pts, packet.dts = packet.pts + d, packet.dts + d
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
            return
        vs = out.add_stream(codec, rate=30)
        vs.width, vs.height = size or (inp.streams.video[0].width, inp.streams.video[0].height)
        vs.pix_fmt = "yuv420p"
        if codec == "libx265":
            vs.codec_context.options = {"x265-params": "log-level=none", "preset": "ultrafast"}
        for i, vf in enumerate(inp.decode(video=0)):
            frame = vf.reformat(width=vs.width, height=vs.height, format="yuv420p")
            frame.pts, frame.time_base = round((i / 30 + shift_s) * 90000), Fraction(1, 90000)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))


def _joined(src: Path, dst: Path, rng: np.random.Generator, kind: str) -> None:
    """Camera pieces joined byte-wise as a camera or NVR writes them: the second restarts at
    0 at another size ("joined"), restarts with another codec ("codec"), or jumps ahead."""
    work = dst.parent
    a, b = work / f"{dst.stem}.a.ts", work / f"{dst.stem}.b.ts"
    _to_ts(src, a)
    if kind == "codec":
        _to_ts(src, b, 0.0, "libx265")
    else:
        shift = float(rng.choice([0.0, 0.0, 3600.0, -0.5]))
        size = [(1280, 720), (320, 180), None][int(rng.integers(0, 3))]
        if size is None:
            _to_ts(src, b, shift)
        else:
            _to_ts(src, b, shift, "libx264", size)
    dst.write_bytes(a.read_bytes() + b.read_bytes())
    a.unlink()
    b.unlink()


def _lose_tables(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """An MPEG-TS whose PAT and PMT are lost for a while (a stretch of a broadcast or a
    camera's UDP stream): their 188-byte packets are cut out of a random stretch."""
    ts = dst.with_suffix(".src.ts")
    _to_ts(src, ts)
    data = ts.read_bytes()
    ts.unlink()
    packets = [data[i:i + 188] for i in range(0, len(data) - 187, 188)]
    pmt = 0x1000  # FFmpeg's MPEG-TS muxer puts the PMT on this PID
    start = int(rng.integers(0, len(packets)))
    stop = start + int(rng.integers(len(packets) // 10, len(packets) // 2))
    kept = [p for i, p in enumerate(packets)
            if not (start <= i < stop and (int.from_bytes(p[1:3], "big") & 0x1FFF) in (0, pmt))]
    dst.write_bytes(b"".join(kept))


def _break_moov(data: bytearray, rng: np.random.Generator) -> None:
    """Flip bytes inside the MP4's movie header box (`moov`: the index of every sample)."""
    at = data.find(b"moov")
    if at < 4:
        return
    size = int.from_bytes(data[at - 4:at], "big")
    for pos in rng.integers(at + 4, at + max(size - 4, 5), int(rng.integers(1, 12))):
        data[int(pos)] ^= int(rng.integers(1, 256))


def _fragmented_cut(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """A fragmented MP4 (as cameras stream and record) cut at a random point."""
    frag = dst.with_suffix(".frag.mp4")
    with av.open(str(src)) as inp, av.open(
            str(frag), "w", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = frag.read_bytes()
    frag.unlink()
    dst.write_bytes(data[:int(rng.integers(len(data) // 5, len(data)))])


def _lose_b_frames(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """Only B-frames lost: packets shown before a packet decoded earlier (pts below the
    largest pts so far) are dropped at random; every reference frame stays."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        shown = None
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is None:
                continue
            if packet.stream.type == "video":
                b_frame = shown is not None and packet.pts is not None and packet.pts < shown
                shown = packet.pts if shown is None else max(shown, packet.pts or shown)
                if b_frame and rng.random() < 0.5:
                    continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


MUTATIONS = ("flip", "truncate", "drop", "duplicate", "duration", "audio", "joined",
             "codec", "tables", "moov", "fragment", "bframes")
SUFFIX = {"joined": ".ts", "codec": ".ts", "tables": ".ts"}  # the others: .mp4


def mutate(src: Path, dst: Path, kind: str, seed: int) -> None:
    """Write a mutant of `src` to `dst` (for "joined", "codec" and "tables" an MPEG-TS:
    name it with SUFFIX)."""
    rng = np.random.default_rng(seed)
    if kind in ("drop", "duplicate"):
        _remux(src, dst, rng, kind)
        return
    if kind in ("joined", "codec"):
        _joined(src, dst, rng, kind)
        return
    if kind == "tables":
        _lose_tables(src, dst, rng)
        return
    if kind == "fragment":
        _fragmented_cut(src, dst, rng)
        return
    if kind == "bframes":
        _lose_b_frames(src, dst, rng)
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
    elif kind == "moov":
        _break_moov(data, rng)
    dst.write_bytes(bytes(data))


def _frames(path: Path) -> list[tuple[int | None, np.ndarray]]:
    """(time from the first frame in 1/60 s, RGB frame) of whatever decodes, in display order
    (damaged packets skipped; containers count time from different origins and in different
    units: an MPEG-TS input starts at 1.4 s, its MP4 output at 0)."""
    frames = []
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        try:
            for packet in c.demux(video):
                try:
                    frames += [(vf.time, vf.to_ndarray(format="rgb24")) for vf in packet.decode()]
                except av.error.FFmpegError:
                    continue
        except av.error.FFmpegError:
            pass  # the rest of the file cannot be read: compare what was
    first = next((t for t, _ in frames if t is not None), 0.0)
    return [(None if t is None else round((t - first) * 60), f) for t, f in frames]


def _pairs(src: Path, out: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input frame, output frame) pairs: in order when both hold as many frames (joined
    recordings are retimed), else by time; input frames of another size (a piece at
    another resolution) are scaled to the output's, as streamguard scales them."""
    import cv2

    inputs, outputs = _frames(src), _frames(out)
    if len(inputs) == len(outputs):
        pairs = [(a, b) for (_, a), (_, b) in zip(inputs, outputs)]
    else:
        by_time = {t: f for t, f in inputs if t is not None}
        pairs = [(by_time[t], f) for t, f in outputs if t in by_time]
    return [(a if a.shape == b.shape else cv2.resize(a, (b.shape[1], b.shape[0]),
                                                     interpolation=cv2.INTER_AREA), b)
            for a, b in pairs]


def faces_in_output(src: Path, out: Path, detector) -> tuple[list[tuple[int, list[int], float]],
                                                             int]:
    """For every face the detector finds in an input frame: (frame, box, how much of its
    fine detail the output frame still shows; <= PROTECTED: protected); and how many frame
    pairs were compared."""
    pairs = _pairs(src, out)
    found = []
    for k, (frame, out_frame) in enumerate(pairs):
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
            found.append((k, [int(x0), int(y0), int(x1), int(y1)], kept))
    return found, len(pairs)


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
        found, compared = faces_in_output(path, out, detector)
        assert compared, f"{path.name}: no output frame could be matched to an input frame"
        for k, face, kept in found:
            assert kept <= PROTECTED, f"{path.name}: the face at {face} (frame {k}) is bare"
        out.unlink()
    else:
        assert not out.exists()
    return proc.returncode, err
