"""The per-frame core every path shares: detect (fail-closed), track, protect.

`FrameProcessor` is what the file pipeline, the live streams, the live workers, the Ray
segments and the library API all run; `detect_timed` is the one place a detection may fail or
overrun; `Lookback` delays frames so a face found late is still covered where it appeared.
Nothing here reads or writes media: callers bring frames and take them away.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from streamguard.config import Config
from streamguard.detect import Detector, create_detector
from streamguard.errors import PipelineError
from streamguard.frames import Faces, Frame, Passthrough
from streamguard.protect import build_video_protector, protect_whole_frame
from streamguard.protect.pixelize import merge_nested
from streamguard.schedule import DetectSchedule
from streamguard.track import Tracker, box_union

log = logging.getLogger(__name__)


class NotLooked:
    """What `detect_timed` returns for a frame the detector skips by schedule
    (`detect.every`): not a failure, and not "no faces" either: the tracks coast over it."""

    def __repr__(self) -> str:
        return "NOT_LOOKED"


NOT_LOOKED = NotLooked()


class FrameProcessor:
    """Detect, track and protect one frame at a time: shared by the pipeline and the library.

    `analyze(frame)` returns the frame with faces (or marked failed closed);
    `protect(frame)` returns the frame with protected pixels, or None when policy drops it.
    """

    def __init__(self, cfg: Config, detector: Detector | None = None, *, detects: bool = True):
        self.cfg = cfg
        # refuses early, before any decoding; holds per-track mosaics (protect.lock)
        self.protector = build_video_protector(cfg.protect)
        # detects=False: detection runs elsewhere (a live stream's worker processes, which
        # build their detectors from the same config and take hints); `apply` takes it here
        if not detects:
            self.detector = None
        else:
            self.detector = detector if detector is not None else create_detector(cfg.detect)
        self._owns_detector = detects and detector is None
        self.tracker = Tracker(cfg.track)
        self.failed_closed = 0
        self.detect_errors = 0
        self.damaged = 0  # frames the decoder patched (lost or skipped data), and their run
        self.timeout_s = cfg.detect.timeout_ms / 1000
        self.every = cfg.detect.every
        # the frame budget (live, `pipeline.realtime`): set by the caller that measures
        self.schedule: DetectSchedule | None = None
        self.takes_hints = self.detector is None or takes_hints(self.detector)

    def reset_tracking(self) -> None:
        """Forget every track (a new file or segment), and what the detector remembers (it
        looks at the first frame in every view again); the models stay loaded."""
        self.tracker = Tracker(self.cfg.track)
        start_over = getattr(self.detector, "start_over", None)
        if start_over is not None:
            start_over()
        if hasattr(self.protector, "reset"):
            self.protector.reset()

    def close(self) -> None:
        if self._owns_detector and self.detector is not None:
            self.detector.close()

    @property
    def owns_detector(self) -> bool:
        """Whether the detector was built here from the config (not handed in)."""
        return self._owns_detector

    def expected(self) -> np.ndarray | None:
        """Where the tracks expect their faces on the next frame (the detector looks there
        closer), or None when this detector takes no hints."""
        return self.tracker.predicted() if self.takes_hints else None

    def detect(self, frame: Frame) -> tuple[Faces | None, str | None]:
        """(faces, None), or (None, why) when detection failed or overran `detect.timeout_ms`."""
        if self.whole_for_damage(frame):
            return NOT_LOOKED, None  # protected whole whatever is found (`apply`)
        if self.detector is None:
            raise PipelineError("this processor tracks and protects only: its frames are "
                                "detected elsewhere")
        if self.schedule is None:
            return detect_timed(self.detector, frame, self.timeout_s, self.expected(),
                                self.every)
        if not self.schedule.look():
            return NOT_LOOKED, None
        return detect_timed(self.detector, frame, self.timeout_s, self.expected(),
                            run=self.schedule.looks, span=self.schedule.span)

    def budget(self) -> DetectSchedule:
        """Put detection on the frame budget (`schedule`): from `detect.every` up to
        `live.budget_max_every`."""
        top = max(self.cfg.live.budget_max_every, self.every)
        self.schedule = DetectSchedule(tuple(range(self.every, top + 1)))
        return self.schedule

    def whole_for_damage(self, frame: Frame) -> bool:
        """A frame lost video data damaged, protected whole by policy (`protect.damaged`)."""
        return frame.damaged and self.cfg.protect.damaged == "frame"

    def analyze(self, frame: Frame) -> Frame:
        """Detect (failing closed on an error or overrun), then track."""
        return self.apply(frame, *self.detect(frame))

    def apply(self, frame: Frame, found: Faces | NotLooked | None,
              failure: str | None = None) -> Frame:
        """Track detections made here or elsewhere (a live worker process); `found` None means
        detection failed (`failure` says how): the frame fails closed and is counted;
        NOT_LOOKED (a frame `detect.every` skips): the tracks coast over it.

        A frame marked damaged (`frame.damaged`: the decoder patched lost data) fails closed
        too with `protect.damaged = "frame"`; with "faces" its tracks cannot end on it (a
        smeared picture hides faces that are there)."""
        damaged = frame.damaged
        self.damaged += damaged
        if self.whole_for_damage(frame):
            if self.damaged == 1:
                log.warning("frame %d: damaged by lost video data; such frames are protected "
                            "whole until the next intact keyframe (counted)", frame.index)
            self.failed_closed += 1
            # the tracks move on as over a frame not looked at: a face is met where it went
            # when the damage ends, and keeps its track (and its mosaic's grid)
            self.tracker.coast(frame.image.shape)
            return frame.replace(failed_closed=True)
        if found is NOT_LOOKED:
            faces = self.tracker.coast(frame.image.shape)
            return frame.replace(faces=faces, detected_ids=frozenset())
        if found is None:
            self.failed_closed += 1
            error = failure is not None and not failure.startswith("timeout")
            self.detect_errors += error
            if self.failed_closed <= 3 or not error:
                log.warning("frame %d: %s; protecting the whole frame", frame.index, failure)
            return frame.replace(failed_closed=True, detect_error=error)
        faces = self.tracker.update(found, frame.image.shape, hold=damaged, picture=frame.image)
        return frame.replace(faces=faces, detected_ids=self.tracker.detected_ids)

    def protect(self, frame: Frame) -> Frame | None:
        if frame.failed_closed:
            if self.cfg.protect.fail_closed == "drop":
                return None
            return frame.replace(image=protect_whole_frame(frame.image, self.cfg.protect))
        if frame.faces is None:
            raise PipelineError(f"frame {frame.index} reached protection without detection")
        if len(frame.faces) == 0:
            return frame
        return frame.replace(image=self.protector(frame.image, merge_nested(frame.faces)))


class OverlappedDetection:
    """Detection of a frame starts before the previous frame's has finished, each running on
    a detector of its own (`detect.overlap` of them): the model releases the GIL, so frames
    use a core the other stages leave idle. Frames are tracked and come out strictly in
    order; a frame's track hints are the tracker's as it stands when its detection starts
    (with 2, one frame older than in sequence: windows are three face sizes wide).
    Fail closed as in `FrameProcessor.analyze`: a failed or late detection fails its frame."""

    def __init__(self, processor: FrameProcessor, overlap: int,
                 make_detector: Callable[[], Detector] | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self.processor = processor
        self.overlap = overlap
        make = make_detector or (lambda: create_detector(processor.cfg.detect))
        self._extra = [make() for _ in range(overlap - 1)]
        self._detectors = [processor.detector, *self._extra]
        self._pool = ThreadPoolExecutor(overlap, thread_name_prefix="streamguard-detect")
        self._pending: deque = deque()  # (item, future or None), in input order
        self._started = 0

    def push(self, item: Frame | Passthrough) -> list[Frame | Passthrough]:
        """Start detecting `item` (a Frame); return the items now finished, in order."""
        if isinstance(item, Frame):
            detector = self._detectors[self._started % self.overlap]
            self._started += 1
            future = self._pool.submit(detect_timed, detector, item, self.processor.timeout_s,
                                       self.processor.expected(), self.processor.every)
            self._pending.append((item, future))
        else:
            self._pending.append((item, None))
        out = []
        # a detector is reused `overlap` frames later: that frame's detection must be done.
        # Frames are finished only then, never earlier when they happen to be ready: each
        # frame's hints are always exactly overlap - 1 frames old (the output does not
        # depend on timing)
        while sum(f is not None for _, f in self._pending) >= self.overlap:
            out += self._finish_one()
        while self._pending and self._pending[0][1] is None:
            out += self._finish_one()
        return out

    def _finish_one(self) -> list[Frame | Passthrough]:
        item, future = self._pending.popleft()
        if future is None:
            return [item]
        return [self.processor.apply(item, *future.result())]

    def flush(self) -> list[Frame | Passthrough]:
        out = []
        while self._pending:
            out += self._finish_one()
        return out

    def close(self, wait: bool = True) -> None:
        """Stop the detection threads; `wait=False` when a detection may be hung in native
        code (its thread is abandoned, as the pipeline abandons a hung stage)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if wait:
            for detector in self._extra:
                detector.close()


def _takes(detector: Detector, name: str) -> bool:
    """Whether `detector.detect` takes the keyword `name` (detectors registered elsewhere may
    not); asked once per detector class, as it is asked on every look."""
    return _signature_has(type(detector), name)


@functools.cache
def _signature_has(kind: type, name: str) -> bool:
    return name in inspect.signature(kind.detect).parameters


def takes_hints(detector: Detector) -> bool:
    """Whether `detector.detect` takes track hints (`around`)."""
    return _takes(detector, "around")


def looked_at(index: int, every: int) -> bool:
    """Whether frame `index` is one the detector looks at when it runs on every `every`-th."""
    return every <= 1 or index % every == 0


def detect_timed(detector: Detector, frame: Frame, timeout_s: float,
                 around: np.ndarray | None = None, every: int = 1, run: int | None = None,
                 span: int | None = None,
                 ) -> tuple[Faces | NotLooked | None, str | None]:
    """(faces, None), or (None, why) when the detector raised or overran `timeout_s` (late
    results are discarded: the frame fails closed), or (NOT_LOOKED, None) for a frame the
    schedule skips (`every`: the detector runs on every `every`-th frame; it is told the
    count of its runs, which paces its tiles). `around`: track hints, for detectors that
    take them. `run`: the caller scheduled this look itself (the frame budget) and counts the
    detector's runs; `span`: then, the frames this look stands for (else `every`)."""
    if run is None and not looked_at(frame.index, every):
        return NOT_LOOKED, None
    index = frame.index // max(every, 1) if run is None else run
    if span is None:  # every every-th frame: the first look stands for its own frame alone
        span = min(max(every, 1), frame.index + 1)
    extra = {} if around is None else {"around": around}
    if span > 1 and _takes(detector, "span"):
        extra["span"] = span
    start = time.perf_counter()
    try:
        found = detector.detect(frame.image, index, **extra)
    except Exception as exc:  # noqa: BLE001 - any detector failure fails this frame closed
        return None, f"detection failed ({type(exc).__name__}: {exc})"
    took = time.perf_counter() - start
    if took > timeout_s:
        return None, f"timeout: detection took {took * 1000:.0f} ms (over {timeout_s * 1000:.0f})"
    return found, None


@dataclass
class _Seen:
    """What the look-back knows of a track: its first and its latest detection."""

    first_pos: int
    first_box: np.ndarray
    last_pos: int
    last_box: np.ndarray
    hits: int = 1


_ALIKE = 1.5  # two boxes whose sides differ by less than this factor show the face's motion


class Lookback:
    """Delays frames by `depth` so a face found late is still covered where it was before.

    - The first frames of a file or stream wait for `first` frames (by default twice
      `depth`, less where the frames held beyond `depth` would pass `spare_bytes`: 8K): a face
      there from the first frame that the models are unsure of (blurred, turned, dark) is
      found on its views' second round, not the first (a 44 px blurred face lying on its
      side, found on frame 22, was bare on frames 0-1 with a 20-frame hold). Then the frames
      held beyond `depth` go out, at once or a few a push (`push(catch_up=)`).
    - At the end (`flush`: the file ended, the camera went away), a track that ended on the
      last frames with its box inside the frame keeps its last box to the end: mid-stream
      the detection that finds it again covers the frames between (below), at the end none
      comes (a 90 px face turned 90 degrees, missed from frame 109 on, was bare on the last
      frame, 119, where its track ran out).

    - A new track's box is back-filled onto the frames before it: its first box repeated,
      and, once its second detection gives it a motion, that box extrapolated backwards along
      the motion (a fast face entering the frame is covered on its way in).
    - A track detected again after frames in which the tracker only extrapolated it gets the
      boxes interpolated between its two detections on those frames (a face that moved
      otherwise than predicted between two tile passes is still covered).
    Added boxes are unions with the track's own box on that frame: one box per track and
    frame, so a face keeps one mosaic grid. Pass-through packets wait in the same queue,
    keeping demux order. Tracks are known by the frames' `detected_ids` (ids detected on
    that frame, not merely extrapolated).
    """

    def __init__(self, depth: int, first: int | None = None, spare_bytes: int | None = None):
        self.depth = depth
        self._first, self._spare = first, spare_bytes
        self.first = depth  # the start's hold: set on each file's first frame (`_first_hold`)
        self._started = False  # the first frame went out: held `depth` frames from then on
        self._items: deque[Frame | Passthrough] = deque()
        self._pos: deque[int] = deque()  # frame position of each buffered item (-1: packet)
        self._frames = 0
        self._count = 0
        self._seen: dict[int, _Seen] = {}

    def push(self, item: Frame | Passthrough, catch_up: int | None = None,
             ) -> Iterable[Frame | Passthrough]:
        """Hold `item`; what goes out now. `catch_up`: once the start's longer hold is over,
        at most this many frames beyond one go out per push, until the hold is back at
        `depth` (a live stream's output takes no burst: 1 when it has room, else 0); None:
        all at once."""
        pos = -1
        if isinstance(item, Frame):
            if not self._started and not self._frames:
                self.first = self._first_hold(item)
            pos = self._count
            self._count += 1
            if item.faces is not None and len(item.faces) and self.depth:
                self._learn(item, pos)
            self._frames += 1
        self._items.append(item)
        self._pos.append(pos)
        released = 0
        while self._frames > (self.depth if self._started else self.first):
            if catch_up is not None and self._started and released > catch_up:
                break
            out = self._items.popleft()
            self._pos.popleft()
            if isinstance(out, Frame):
                self._frames -= 1
                self._started = True
                released += 1
            yield out

    def _first_hold(self, frame: Frame) -> int:
        if self._first is not None:
            return max(self._first, self.depth)
        extra = self.depth
        if self._spare is not None:
            height, width = frame.image.shape[:2]
            extra = min(extra, self._spare // max(width * height * 3, 1))
        return self.depth + extra

    def _learn(self, frame: Frame, pos: int) -> None:
        faces = frame.faces
        detected = frame.detected_ids
        for k, tid in enumerate(faces.track_id.tolist()):
            if tid < 0 or (detected is not None and tid not in detected):
                continue  # untracked, or only extrapolated on this frame
            box = faces.xyxy[k].astype(np.float64)
            seen = self._seen.get(tid)
            if seen is None:
                self._seen[tid] = _Seen(pos, box, pos, box)
                self._fill(tid, lambda p, b=box: b, before=pos)
                continue
            gap = pos - seen.last_pos
            if gap > 1:
                last = seen.last_box
                self._fill(tid, lambda p, a=last, b=box, p0=seen.last_pos:
                           a + (b - a) * (p - p0) / gap, after=seen.last_pos, before=pos)
            if seen.hits == 1:
                # the centre moves back along the motion; the size stays the first boxes'
                # (a size change between two detections is noise, not motion). The first
                # box is one detector input's view (a tile can cut a large face): its own
                # frame and those before also get the second box, moved back along the motion
                first = seen.first_box
                step = ((box[:2] + box[2:]) - (first[:2] + first[2:])) / 2 / max(
                    pos - seen.first_pos, 1)
                # boxes of unlike sizes (an edge face's grown box, then a tighter one) give a
                # centre shift that is not motion: moved back along it, the union of the two
                # swept a 380 px wide strip over the frame, 40 % of an infrared night clip's
                # background on the frames before a face found entering at the bottom
                ratio = (first[2:] - first[:2]) / np.maximum(box[2:] - box[:2], 1e-6)
                if not np.all((ratio > 1 / _ALIKE) & (ratio < _ALIKE)):
                    step = np.zeros(2)
                back = box_union(first, box - np.tile(step, 2) * (pos - seen.first_pos))
                self._fill(tid, lambda p, b=back, p0=seen.first_pos:
                           b - np.tile(step, 2) * (p0 - p), before=seen.first_pos + 1)
            seen.last_pos, seen.last_box = pos, box
            seen.hits += 1
        if len(self._seen) > 4096:  # forget tracks long out of the buffer
            oldest = pos - 4 * max(self.depth, 1)
            self._seen = {t: s for t, s in self._seen.items() if s.last_pos >= oldest}

    def _fill(self, tid: int, box_at, before: int, after: int = -1) -> None:
        """Union the track's box on buffered frames with positions in (after, before)."""
        for i, item in enumerate(self._items):
            p = self._pos[i]
            if not (after < p < before) or not isinstance(item, Frame) or item.faces is None:
                continue
            add = np.asarray(box_at(p), np.float32)
            faces = item.faces
            mine = np.flatnonzero(faces.track_id == tid)
            if len(mine):
                xyxy = faces.xyxy.copy()
                j = mine[0]
                xyxy[j] = box_union(xyxy[j], add)
                faces = Faces(xyxy, faces.score, faces.track_id)
            else:
                faces = Faces.concat([faces, Faces(add[None], np.ones(1, np.float32),
                                                   np.array([tid]))])
            self._items[i] = item.replace(faces=faces)

    def flush(self) -> Iterable[Frame | Passthrough]:
        """Everything held, the tracks that ended on it carried to its end; the next frames
        start a new file or connection (held `first` frames again)."""
        if self.depth:
            self._carry_on()
        while self._items:
            self._pos.popleft()
            yield self._items.popleft()
        self._frames = 0
        self._started = False

    def _carry_on(self) -> None:
        """Each track whose last box among the held frames lies inside its frame, and not on
        the last frame, keeps that box on the frames after it (a track that left through an
        edge ends with its box across it)."""
        last: dict[int, tuple[int, np.ndarray]] = {}
        end = -1
        for item, pos in zip(self._items, self._pos):
            if not isinstance(item, Frame) or item.faces is None:
                continue
            end = pos
            height, width = item.image.shape[:2]
            for box, tid in zip(item.faces.xyxy, item.faces.track_id.tolist()):
                inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
                if tid >= 0:
                    last[tid] = (pos, box.astype(np.float64) if inside else None)
        for tid, (pos, box) in last.items():
            if pos < end and box is not None:
                self._fill(tid, lambda p, b=box: b, before=end + 1, after=pos)
