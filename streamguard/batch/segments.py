"""Cut a video at keyframes, protect the pieces anywhere, join them back losslessly.

This is the offline pipeline split for many machines (`streamguard.batch.distributed` runs it on Ray);
nothing here knows about Ray, so every step is testable in one process.

- `plan_segments` demuxes the video stream once (no decoding) and cuts it at keyframes about
  `segment_s` apart. A segment *owns* the frames whose pts lie in [start, end).
- `iter_jobs` reads the packets of each segment plus context: the whole GOP before the cut
  (needed to decode, and to warm the tracker on its last `context_frames` frames) and the first
  packets after the end (so a face first seen just after the cut is back-filled into the
  segment's last frames, as the single-machine look-back does; open-GOP leading pictures, whose
  pts fall before the next cut, are decoded from them too).
- `process_segment` decodes those packets, runs the same `FrameProcessor` and `Lookback` as the
  single-machine pipeline, and encodes the owned frames with `PacketEncoder`, the encoder
  settings `VideoSink` uses for the output file.
- `join_segments` muxes the encoded packets in order into the output with the input's audio,
  subtitle and data packets copied byte for byte, through `VideoSink` (atomic rename), after
  checking that every segment's encoder produced the output stream's exact headers.

Packets are plain picklable records, so workers need no shared file system: only the process
that reads the input and writes the output touches files.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from streamguard.config import Config
from streamguard.errors import CorruptMediaError, OutputError, PipelineError
from streamguard.frames import Frame, Passthrough
from streamguard.io.sink import EncodedPacket, PacketEncoder, VideoSink
from streamguard.io.decode import FrameDecoder, PtsFallback
from streamguard.io.source import SourceInfo, VideoSource
from streamguard.io.timeline import JUMP_S, Timeline
from streamguard.process import FrameProcessor, Lookback
from streamguard.report import RunReport

log = logging.getLogger(__name__)

REORDER_MARGIN = 16  # packets past the context frames: covers any B-frame reordering depth


class SegmentMismatchError(CorruptMediaError):
    """A segment decoded other frames than the plan counted: the file cannot be cut exactly
    (packed B-frames, damaged packets...). The caller processes it whole instead."""


@dataclass(frozen=True)
class Packet:
    """A demuxed video packet, detached from its container."""

    data: bytes
    pts: int | None
    dts: int | None
    key: bool
    discard: bool = False


@dataclass(frozen=True)
class VideoParams:
    """What a worker needs to decode the video stream and encode it like the output file."""

    codec: str
    extradata: bytes
    pix_fmt: str | None  # some decoders (FFV1, raw video) need it besides the bitstream
    width: int
    height: int
    time_base: Fraction
    rotation: int
    info: SourceInfo  # without copy streams (those stay with the reader)


@dataclass(frozen=True)
class Segment:
    index: int
    start: int | None  # owned pts range [start, end); None = open
    end: int | None
    frames: int  # packets (frames) whose pts fall in the range

    def owns(self, pts: int) -> bool:
        return (self.start is None or pts >= self.start) and (self.end is None or pts < self.end)


@dataclass(frozen=True)
class Plan:
    path: str
    params: VideoParams
    segments: tuple[Segment, ...]
    frames: int


@dataclass(frozen=True)
class SegmentJob:
    """One unit of work: everything a worker needs, picklable."""

    key: str  # the file's id in the batch
    output_suffix: str
    segment: Segment
    params: VideoParams
    packets: tuple[Packet, ...]
    context_frames: int


@dataclass
class EncodedSegment:
    key: str
    index: int
    packets: list[EncodedPacket]
    extradata: bytes
    frames: int  # owned frames decoded
    report: RunReport
    worker: str = ""
    offsets: tuple[Fraction, ...] = ()  # the video's piece offsets (a file with discontinuities)


AUDIO_LEAD_S = Fraction(1, 2)  # how far a piece's audio may run ahead of its video at a join


# -- planning --------------------------------------------------------------------------------
def plan_segments(path: str | Path, segment_s: float) -> Plan:
    """Choose cuts at keyframes at least `segment_s` apart. Raises what `VideoSource` raises."""
    path = Path(path)
    with VideoSource(path) as source:
        info = source.info
        video = source.video
        tb = video.time_base or Fraction(1, 90000)
        rotation = 0
        first = next((f for f in source.items() if isinstance(f, Frame)), None)
        if first is not None:
            rotation = first.rotation
        params = VideoParams(
            codec=video.codec_context.name,
            extradata=bytes(video.codec_context.extradata or b""),
            pix_fmt=video.codec_context.format.name if video.codec_context.format else None,
            width=info.width, height=info.height, time_base=tb, rotation=rotation,
            info=dataclasses.replace(info, copy_streams=()),
        )
    keys: list[tuple[int, int | None]] = []  # (keyframe pts, largest pts stored before it)
    all_pts: list[int] = []
    shown_max: int | None = None
    splittable = True
    last_dts: int | None = None
    jump = JUMP_S / tb
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            for pkt in container.demux(stream):
                if pkt.size == 0:
                    continue
                if pkt.is_corrupt and container.format.name != "mpegts":
                    # cut mid-packet or damaged (MPEG-TS flags every continuity jump, joins
                    # too): the decoder's own error may be lost in its threads
                    raise CorruptMediaError(f"{path}: damaged or truncated: a video packet is "
                                            "cut or damaged")
                if pkt.pts is None:
                    splittable = False
                    continue
                if pkt.dts is not None:
                    # timestamps that restart or jump (joined recordings): pts ranges cannot
                    # name the segments, so the file is processed uncut, on one clock
                    if last_dts is not None and not last_dts <= pkt.dts <= last_dts + jump:
                        splittable = False
                    last_dts = pkt.dts
                if pkt.is_keyframe:
                    keys.append((pkt.pts, shown_max))
                if not pkt.is_discard:
                    all_pts.append(pkt.pts)
                shown_max = pkt.pts if shown_max is None else max(shown_max, pkt.pts)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(f"{path}: demuxing failed ({exc})") from None
    step = segment_s / float(tb)
    cuts: list[int] = []
    if splittable and keys:
        last = keys[0][0]
        for k, before in keys[1:]:
            # a cut is safe only where no frame stored before it is shown after it
            if (k - last >= step and before is not None and k > before
                    and shown_max is not None and shown_max - k >= step / 2):  # no stub tail
                cuts.append(k)
                last = k
    bounds = [None, *cuts, None]
    shown = sorted(all_pts)
    segments = []
    for i in range(len(bounds) - 1):
        lo = 0 if bounds[i] is None else bisect.bisect_left(shown, bounds[i])
        hi = len(shown) if bounds[i + 1] is None else bisect.bisect_left(shown, bounds[i + 1])
        segments.append(Segment(i, bounds[i], bounds[i + 1], hi - lo))
    return Plan(str(path), params, tuple(segments), len(all_pts))


# -- reading ---------------------------------------------------------------------------------
def iter_jobs(plan: Plan, key: str, output_suffix: str, context_frames: int,
              ) -> Iterator[SegmentJob]:
    """Yield one job per segment, in order, reading the input once."""
    segments = plan.segments
    post_n = context_frames + REORDER_MARGIN
    nxt = 1  # the next segment to begin
    gop: list[Packet] = []  # packets since the last keyframe
    context: list[Packet] = []  # the GOP before the current segment
    body: list[Packet] = []  # the current segment's packets
    pending: tuple[Segment, list[Packet], list[Packet], list[Packet]] | None = None
    with av.open(plan.path) as container:
        for pkt in container.demux(container.streams.video[0]):
            if pkt.size == 0:
                continue
            p = Packet(bytes(pkt), pkt.pts, pkt.dts, bool(pkt.is_keyframe), bool(pkt.is_discard))
            if pending is not None:  # a finished segment collecting its post context
                pending[3].append(p)
                if len(pending[3]) >= post_n:
                    yield _job(key, output_suffix, plan, *pending, context_frames)
                    pending = None
            if p.key and nxt < len(segments) and p.pts == segments[nxt].start:
                if pending is not None:  # a segment shorter than the post context
                    yield _job(key, output_suffix, plan, *pending, context_frames)
                pending = (segments[nxt - 1], context, body, [p])
                context, body = gop, []
                nxt += 1
            if p.key:
                gop = []
            gop.append(p)
            body.append(p)
    if pending is not None:
        yield _job(key, output_suffix, plan, *pending, context_frames)
    yield _job(key, output_suffix, plan, segments[nxt - 1], context, body, [], context_frames)


def _job(key: str, suffix: str, plan: Plan, seg: Segment, context: list[Packet],
         body: list[Packet], post: list[Packet], context_frames: int) -> SegmentJob:
    return SegmentJob(key, suffix, seg, plan.params, tuple(context + body + post), context_frames)


# -- processing (on a worker) ----------------------------------------------------------------
def process_segment(job: SegmentJob, cfg: Config, processor: FrameProcessor) -> EncodedSegment:
    """Decode, protect and encode one segment's owned frames. `processor` keeps its detector
    and protector between calls; its tracker is reset here."""
    t0 = time.perf_counter()
    params, seg = job.params, job.segment
    processor.reset_tracking()
    report = RunReport(input=job.key, output="", mode=cfg.protect.mode)
    encoder = PacketEncoder(Path("segment" + job.output_suffix), params.info, cfg.encode,
                            params.width, params.height, params.time_base)
    # the file's first frames are held longer (`Lookback.first`); a later segment's first
    # frames are the middle of the file, as in one pass
    depth = cfg.track.lookback
    lookback = Lookback(depth, None if seg.start is None else depth,
                        spare_bytes=cfg.pipeline.memory_mb * 2**20)
    out: list[EncodedPacket] = []
    pre: deque[tuple[int, int, av.VideoFrame]] = deque(maxlen=max(job.context_frames, 0))
    owned = post_seen = 0
    index = 0
    tracks_before: set[int] = set()  # seen in the frames before the cut: counted there
    tracks_owned: set[int] = set()

    def emit(item: Frame) -> None:
        ids = set() if item.faces is None else {int(t) for t in item.faces.track_id}
        if not seg.owns(item.pts):
            if seg.start is not None and item.pts < seg.start:
                tracks_before.update(ids)
            return  # context frame: analyzed for the tracker, owned by a neighbour
        tracks_owned.update(ids)
        protected = processor.protect(item)
        report.count(item, protected)
        if protected is not None:
            out.extend(encoder.encode(protected))

    # a segment starts at a keyframe; data the decoder patched is damage, as in a file
    decoder = _decoder(job)

    def analyze(i: int, pts: int, vf: av.VideoFrame, damaged: bool) -> None:
        frame = decoder.frame(vf, i, pts, params.time_base, damaged=damaged)
        for ready in lookback.push(processor.analyze(frame)):
            emit(ready)

    rate = params.info.average_rate
    # the audio the driver copies follows this video's piece offsets (`EncodedSegment.offsets`):
    # a new piece leaves it room to run ahead of the video by up to AUDIO_LEAD_S
    timeline = Timeline(1 / rate if rate else Fraction(1, 30), margin=AUDIO_LEAD_S)
    for pts, vf in _decode(job, decoder, timeline):
        i, index = index, index + 1
        damaged = decoder.damage(vf)  # read in decode order; the picture converted later
        if seg.start is not None and pts < seg.start:
            pre.append((i, pts, vf, damaged))  # converted only if still among the last ones
            continue
        while pre:  # the cut reached: warm the tracker on the last context frames
            analyze(*pre.popleft())
        if seg.owns(pts):
            owned += 1
        else:
            post_seen += 1
            if post_seen > job.context_frames:
                continue
        analyze(i, pts, vf, damaged)
    for ready in lookback.flush():
        emit(ready)
    out.extend(encoder.encode(None))
    extradata = encoder.extradata
    encoder.close()
    whole = seg.start is None and seg.end is None  # the file uncut: as the single-machine path
    if owned != seg.frames and not whole:
        raise SegmentMismatchError(
            f"{job.key}: segment {seg.index} decoded {owned} of its {seg.frames} frames")
    # a track crossing the cut was counted by the segment before (its frames before the cut
    # are that segment's), so the file's total counts it once
    report.tracks = len(tracks_owned - tracks_before)
    report.pts_discontinuities = timeline.discontinuities
    report.wall_s = time.perf_counter() - t0
    return EncodedSegment(job.key, seg.index, out, extradata, owned, report,
                          offsets=tuple(timeline.offsets))


def _decoder(job: SegmentJob) -> FrameDecoder:
    """The segment's decoder, made from the file's stream parameters (frames of another size
    are rescaled to them, as in a file)."""
    params = job.params
    try:
        return FrameDecoder.for_codec(params.codec, job.key, extradata=params.extradata,
                                      width=params.width, height=params.height,
                                      pix_fmt=params.pix_fmt)
    except (av.error.FFmpegError, ValueError):
        raise CorruptMediaError(f"{job.key}: no decoder for '{params.codec}'") from None


def _decode(job: SegmentJob, decoder: FrameDecoder, timeline: Timeline,
            ) -> Iterator[tuple[int, av.VideoFrame]]:
    """(pts, decoded frame) in display order, the pts on `timeline` (a joined file, planned
    uncut, gets one clock); the RGB conversion is left to the caller, which skips it for the
    context frames it does not analyze."""
    params = job.params
    tb = params.time_base
    fallback = PtsFallback(params.info)
    # frames the demuxer marks for discarding (edit lists) are dropped, as a demuxing decoder
    # does; PyAV cannot set the flag on a packet, so they are recognized by their pts
    discard = {p.pts for p in job.packets if p.discard}

    def frames(packet: av.Packet | None) -> Iterator[tuple[int, av.VideoFrame]]:
        try:
            decoded = decoder.decode(packet)
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(f"{job.key}: decoding failed ({exc})") from None
        for vf in decoded:
            if vf.pts is None or vf.pts not in discard:
                yield timeline.pts(0, fallback(vf.pts, tb)[0], tb), vf

    for p in job.packets:
        pkt = av.Packet(p.data)
        pkt.pts, pkt.dts, pkt.time_base = p.pts, p.dts, tb
        pkt.is_keyframe = p.key
        yield from frames(pkt)
    yield from frames(None)


# -- joining ---------------------------------------------------------------------------------
class SegmentJoiner:
    """Writes one output from its encoded segments, in order, as they arrive (any order).

    The input's other streams are copied from a second read of the input, interleaved by time;
    the output appears under its final name only when every segment is written.
    """

    def __init__(self, plan: Plan, dst: str | Path, cfg: Config):
        self.plan = plan
        self.dst = Path(dst)
        self.done = False
        self._source = VideoSource(plan.path)
        info = self._source.open()
        params = plan.params
        try:  # a failure here leaves neither the input open nor a partial output behind
            self._sink = VideoSink(self.dst, info, cfg.encode)
        except BaseException:
            self._source.close()
            raise
        try:
            self._sink.open(params.width, params.height, params.rotation, params.time_base)
        except BaseException:
            self.abort()
            raise
        # the other streams are read once the first segment is here: a file with timestamp
        # discontinuities (planned uncut) has its audio follow the video's piece offsets
        self._other: Iterator[Passthrough] | None = None
        self._next_other: Passthrough | None = None
        self._waiting: dict[int, EncodedSegment] = {}
        self._next = 0
        self._last_dts: int | None = None
        self.report = RunReport(input=plan.path, output=str(dst), mode=cfg.protect.mode,
                                resolution=f"{params.width}x{params.height}")

    def add(self, part: EncodedSegment) -> None:
        self._waiting[part.index] = part
        while self._next in self._waiting:
            self._write(self._waiting.pop(self._next))
            self._next += 1
        if self._next == len(self.plan.segments):
            self._finish()

    def _write(self, part: EncodedSegment) -> None:
        if self._other is None:
            self._other = self._source.passthrough(list(part.offsets))
            self._next_other = next(self._other, None)
        if part.extradata != self._sink.extradata:
            raise OutputError(
                f"{self.dst}: segment {part.index} was encoded with other codec headers than "
                "the output stream (mismatched encoder settings or library versions across "
                "workers)")
        _merge_report(self.report, part.report)
        for pkt in part.packets:
            if pkt.dts is not None and self._last_dts is not None and pkt.dts <= self._last_dts:
                # an encoder restarts its dts at the segment start: keep them increasing
                dts = self._last_dts + 1
                if pkt.pts is not None and dts > pkt.pts:
                    raise OutputError(f"{self.dst}: segment {part.index} overlaps the previous "
                                      "one in decode order; use a larger ray.segment_s")
                pkt = dataclasses.replace(pkt, dts=dts)
            if pkt.dts is not None:
                self._last_dts = pkt.dts
                self._copy_until(pkt.dts * pkt.time_base)
            self._sink.write_encoded(pkt)

    def _copy_until(self, t: Fraction | None) -> None:
        """Mux the other streams' packets up to time `t` (seconds; None: all that are left)."""
        if self._other is None:  # no segment came (nothing to follow): read them as they are
            self._other = self._source.passthrough()
            self._next_other = next(self._other, None)
        while self._next_other is not None:
            other = self._next_other.packet
            if t is not None and other.dts * other.time_base > t:
                return
            self._sink.passthrough(self._next_other)
            self._next_other = next(self._other, None)

    def _finish(self) -> None:
        self._copy_until(None)
        self._sink.finish()
        self._source.close()
        self.report.packets_copied = self._sink.packets_copied
        self.report.dropped_streams = list(self._sink.dropped_streams)
        self.done = True

    def abort(self) -> None:
        """Delete the partial output; nothing that looks complete is left."""
        if not self.done:
            self._sink.abort()
            self._source.close()


def _merge_report(total: RunReport, part: RunReport) -> None:
    total.add(part)
    total.tracks += part.tracks
    total.pts_discontinuities += part.pts_discontinuities
    for stage, busy in part.stage_busy_s.items():
        total.stage_busy_s[stage] = total.stage_busy_s.get(stage, 0.0) + busy


# -- one process -----------------------------------------------------------------------------
def anonymize_segmented(src: str | Path, dst: str | Path, cfg: Config, segment_s: float,
                        context_frames: int, *,
                        processor: FrameProcessor | None = None,
                        on_segment: Callable[[EncodedSegment], None] | None = None) -> RunReport:
    """The segmented path in this process (tests, and the baseline of the Ray benchmark)."""
    t0 = time.perf_counter()
    plan = plan_segments(src, segment_s)
    own = processor is None
    processor = processor or FrameProcessor(cfg)
    joiner = SegmentJoiner(plan, dst, cfg)
    try:
        for job in iter_jobs(plan, str(src), Path(dst).suffix, context_frames):
            part = process_segment(job, cfg, processor)
            if on_segment is not None:
                on_segment(part)
            joiner.add(part)
        if not joiner.done:
            raise PipelineError(f"{src}: not every segment was written")
    except BaseException:
        joiner.abort()
        raise
    finally:
        if own:
            processor.close()
    joiner.report.wall_s = time.perf_counter() - t0
    return joiner.report


__all__ = [
    "EncodedSegment", "Packet", "Plan", "Segment", "SegmentJob", "SegmentJoiner",
    "SegmentMismatchError", "VideoParams",
    "anonymize_segmented", "iter_jobs", "plan_segments", "process_segment",
]
