"""One increasing output clock for inputs whose timestamps restart, jump back or jump ahead.

Cameras and NVRs write such files: recordings joined with `cat` (each piece starting again
at 0, perhaps at another size), a camera that restarted mid-file, exports that skip hours.
Muxers refuse timestamps that go backwards ("writing failed", before this), and a jump ahead
by hours leaves a player on one frame for hours. `Timeline` maps every stream's timestamps
onto one output clock: out = in + offset, with one offset per discontinuity, shared by all
streams so audio keeps its sync with the video. The first stream to jump declares a
discontinuity (its piece starts one frame step after the latest output time); the other
streams, when they jump too, join the same piece. Items of a stream that has not jumped yet
keep their old piece's offset: a video decoder still gives the last frames of the old piece
after the audio of the new one has begun.

A jump is a step back in time (any stream: decoded frames come in presentation order, and
packets are timed by their dts, which a container keeps rising per stream), or a step ahead
by more than `jump_s` in a dense stream (video, audio; subtitles and data are sparse: minutes
between cues are normal).
With no discontinuity every timestamp comes out unchanged, to the tick.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from fractions import Fraction

JUMP_S = 10  # a dense stream stepping ahead by more than this has jumped (FFmpeg's own
# discontinuity threshold for MPEG-TS, `dts_delta_threshold`, is 10 s too)


@dataclass
class _Clock:
    """One stream's place on the timeline."""

    piece: int
    last_in: Fraction
    last_out: Fraction


class Timeline:
    """Input times -> output times, per stream, increasing across discontinuities.

    Files start on the input's own clock (no discontinuity: every timestamp unchanged). A live
    connection gives `clock` (seconds on the stream's output clock): its first item is
    anchored there, and each new piece starts no earlier than `clock()`, so the output stays
    near the wall clock the outputs' placeholders follow."""

    def __init__(self, step: Fraction = Fraction(1, 30), jump_s: float = JUMP_S,
                 clock: Callable[[], Fraction] | None = None,
                 follow: list[Fraction] | None = None, margin: Fraction = Fraction(0)):
        # the gap a new piece starts after: one video frame, plus `margin` where streams this
        # timeline does not see (audio a Ray worker never reads) may run ahead of its own
        self.step = Fraction(step) + Fraction(margin)
        self.jump = Fraction(jump_s).limit_denominator(1000)
        self._clock = clock
        # another timeline's piece offsets to use (the audio of a Ray job, copied by the
        # driver, follows the video the worker retimed): piece k takes follow[k]
        self._follow = list(follow or [])
        # seconds added to input times, one per piece; a live one is anchored by its first item
        self._offsets: list[Fraction] = [] if clock is not None else [Fraction(0)]
        self._clocks: dict[Hashable, _Clock] = {}
        self._end: Fraction | None = None  # the latest output time of any stream
        self._last_pts: dict[Hashable, int] = {}  # each stream's last output pts (`pts`)

    @property
    def discontinuities(self) -> int:
        return max(len(self._offsets) - 1, 0)

    @property
    def offsets(self) -> list[Fraction]:
        """Each piece's offset, seconds (for another timeline to `follow`)."""
        return list(self._offsets)

    def pts(self, stream: Hashable, pts: int, time_base: Fraction, *, dense: bool = True
            ) -> int:
        """`pts` of `stream` (in `time_base`) on the output clock, in the same time base
        (for a packet, give its dts: the output dts; its pts moves by as much)."""
        time_base = Fraction(time_base)
        t = pts * time_base
        pieces = len(self._offsets)
        out = self.time(stream, t, dense=dense)
        result = pts if out == t else pts + round((out - t) / time_base)
        last = self._last_pts.get(stream)
        if len(self._offsets) > pieces and last is not None and result <= last:
            result = last + 1  # a new piece a step too small for this time base: one tick on
        self._last_pts[stream] = result
        return result

    def time(self, stream: Hashable, t: Fraction, *, dense: bool = True) -> Fraction:
        """Input time `t` (seconds) of `stream` on the output clock (seconds)."""
        if not self._offsets:
            self._offsets.append(self._clock() - t)
        clock = self._clocks.get(stream)
        latest = len(self._offsets) - 1
        if clock is None:
            clock = self._clocks[stream] = _Clock(latest, t, t + self._offsets[latest])
        elif t < clock.last_in or (dense and t > clock.last_in + self.jump):
            if clock.piece < latest:
                clock.piece += 1  # another stream began this piece: join it
            elif len(self._offsets) < len(self._follow):
                self._offsets.append(self._follow[len(self._offsets)])
                clock.piece = len(self._offsets) - 1
            else:
                start = (self._end if self._end is not None else clock.last_out) + self.step
                if self._clock is not None:
                    start = max(start, self._clock())
                self._offsets.append(start - t)
                clock.piece = len(self._offsets) - 1
            out = t + self._offsets[clock.piece]
            if out <= clock.last_out:  # its piece began a little later for it: move the piece on
                self._offsets[clock.piece] += clock.last_out + self.step - out
        offset = self._offsets[clock.piece]
        clock.last_in, clock.last_out = t, t + offset
        self._end = clock.last_out if self._end is None else max(self._end, clock.last_out)
        return t + offset

    def shift(self, seconds: Fraction) -> None:
        """Start the latest piece `seconds` later (a live connection's first timed frame,
        kept a frame interval after one timed on arrival)."""
        if self._offsets:
            self._offsets[-1] += seconds
