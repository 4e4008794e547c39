"""process.py: the look-back that covers a face where it was before it was found."""

from __future__ import annotations

import numpy as np
import pytest

from streamguard.frames import Faces, Frame
from streamguard.process import Lookback


def _frame(i: int, boxes: dict[int, list[float]], detected: set[int]) -> Frame:
    ids = list(boxes)
    faces = Faces(np.array([boxes[t] for t in ids], np.float32).reshape(-1, 4),
                  np.ones(len(ids), np.float32), np.array(ids, np.int64))
    return Frame.numbered(i, np.zeros((4, 4, 3), np.uint8), faces=faces,
                 detected_ids=frozenset(detected))


def _run(frames: list[Frame], depth: int) -> list[Frame]:
    lb = Lookback(depth)
    out = [o for f in frames for o in lb.push(f)]
    return out + list(lb.flush())


def _covers(frame: Frame, box: list[float]) -> bool:
    x = frame.faces.xyxy
    return bool(((x[:, 0] <= box[0]) & (x[:, 1] <= box[1]) & (x[:, 2] >= box[2])
                 & (x[:, 3] >= box[3])).any())


def test_a_fast_face_found_late_is_covered_along_its_way_in():
    """Regression: the back-fill repeated the first box, so a face entering at 30 px per frame
    was bare on the frames before it was found."""
    frames = [_frame(i, {}, set()) for i in range(6)]
    frames += [_frame(6, {7: [300, 100, 350, 150]}, {7}), _frame(7, {7: [330, 100, 380, 150]}, {7})]
    out = _run(frames, depth=10)
    for i in range(6):
        where = 300 - 30 * (6 - i)
        assert _covers(out[i], [where, 100, where + 50, 150]), i
        assert _covers(out[i], [300, 100, 350, 150])  # the first box is still there too
        assert len(out[i].faces) == 1  # one box per track and frame: one mosaic grid


def test_a_face_refound_after_extrapolated_frames_is_covered_in_between():
    """Regression: between two detections the tracker extrapolated the box where the face
    was not (it turned); those frames were bare."""
    frames = [_frame(0, {3: [0, 0, 40, 40]}, {3})]
    frames += [_frame(i, {3: [0, 0, 40, 40]}, set()) for i in (1, 2, 3)]  # extrapolated only
    frames += [_frame(4, {3: [80, 0, 120, 40]}, {3})]
    out = _run(frames, depth=10)
    for i in (1, 2, 3):
        assert _covers(out[i], [20 * i, 0, 20 * i + 40, 40]), i
        assert _covers(out[i], [0, 0, 40, 40])
    assert len(out) == 5 and [f.index for f in out] == list(range(5))


def test_a_face_there_from_the_first_frame_and_found_late_is_covered_from_frame_0():
    """Regression: a 44 px blurred face lying on its side, there from frame 0, was found on
    frame 22 (its turned view's second round); the 20-frame look-back covered frames 2-21
    only. The first frames are held twice the depth."""
    box = [100, 100, 140, 140]
    frames = [_frame(i, {}, set()) for i in range(22)]
    frames += [_frame(i, {5: box}, {5}) for i in range(22, 30)]
    out = _run(frames, depth=20)
    assert [f.index for f in out] == list(range(30))  # in order, none lost
    assert all(_covers(f, box) for f in out)
    once = Lookback(20, first=20)
    held_once = [o for f in frames for o in once.push(f)]
    assert not _covers(held_once[0], box)  # one depth's hold: frame 0 went out bare


def test_the_first_frames_wait_then_the_hold_returns_to_its_depth():
    lb = Lookback(3)
    released = [len(list(lb.push(_frame(i, {}, set())))) for i in range(10)]
    assert released == [0] * 6 + [4, 1, 1, 1]  # 2 x 3 held at the start, then 3
    assert len(list(lb.flush())) == 3
    again = [len(list(lb.push(_frame(i, {}, set())))) for i in range(10, 17)]
    assert again == [0] * 6 + [4]  # a new file or connection: held longer again


def test_a_live_stream_drains_its_longer_first_hold_a_frame_at_a_time():
    """Live, the frames held beyond the depth at the start go out one extra per frame while
    the output has room (`catch_up`), none while it has not: never a burst."""
    lb = Lookback(3)
    released = [len(list(lb.push(_frame(i, {}, set()), catch_up=1))) for i in range(10)]
    assert released == [0] * 6 + [2, 2, 2, 1]  # 6 held, then down to 3 two at a time
    lb = Lookback(3)
    released = [len(list(lb.push(_frame(i, {}, set()), catch_up=0))) for i in range(10)]
    assert released == [0] * 6 + [1] * 4  # no room: the longer hold stays


def test_the_longer_first_hold_stays_within_the_memory_budget():
    """8K frames (100 MB each): the first frames are held longer only as far as
    `pipeline.memory_mb` holds them."""
    frame_bytes = 4 * 4 * 3  # _frame's pictures
    lb = Lookback(3, spare_bytes=2 * frame_bytes)
    released = [len(list(lb.push(_frame(i, {}, set())))) for i in range(7)]
    assert released == [0] * 5 + [3, 1]  # 3 + 2 held at the start


def test_a_track_that_ends_inside_the_frame_on_the_last_frames_is_covered_to_the_end():
    """Regression: a 90 px face turned 90 degrees, missed from frame 109 of 120, ran out of
    its track on frame 119, the file's last: bare there, where mid-file the detection that
    finds it again would have covered it (the back-fill above). A track that left through
    the edge is not carried on."""
    def frame(i, boxes):
        faces = Faces(np.array(list(boxes.values()), np.float32).reshape(-1, 4),
                      np.ones(len(boxes), np.float32), np.array(list(boxes), np.int64))
        return Frame.numbered(i, np.zeros((200, 300, 3), np.uint8), faces=faces,
                              detected_ids=frozenset())
    inside, leaving = [100, 50, 190, 140], [250, 50, 320, 120]
    frames = [frame(i, {1: inside, 2: leaving}) for i in range(20)]
    frames += [frame(i, {}) for i in range(20, 25)]
    out = _run(frames, depth=10)
    assert all(_covers(f, inside) for f in out)
    assert not any(_covers(f, leaving) for f in out[20:])
    # mid-stream, nothing is carried: the look-back holds 10 frames, the end is not known
    lb = Lookback(10)
    mid = [o for f in frames + [frame(i, {}) for i in range(25, 40)] for o in lb.push(f)]
    assert [f.index for f in mid] == list(range(30))
    assert not any(_covers(f, inside) for f in mid[20:])


def test_two_first_boxes_of_unlike_sizes_are_not_taken_for_motion():
    """Regression: an infrared face entering at the bottom was found first with an edge
    face's grown box, then with a tighter one; the centre shift between them, taken for
    motion, moved the back-filled boxes up the frame, their union with the first box a
    380 px wide strip over 40 % of the background. Unlike sizes: the boxes stay put."""
    grown, tight = [76, 187, 459, 782], [144, 540, 389, 841]
    frames = [_frame(i, {}, set()) for i in range(10)]
    frames += [_frame(10, {4: grown}, {4}), _frame(11, {4: grown}, set()),
               _frame(12, {4: grown}, set()), _frame(13, {4: tight}, {4})]
    out = _run(frames, depth=20)
    for f in out[:10]:
        assert _covers(f, grown) and _covers(f, tight)  # still covered where it was found
        x0, y0, x1, y1 = f.faces.xyxy[0]
        assert y0 >= grown[1] and y1 <= tight[3], f.index  # not swept up the frame
    # boxes of like sizes still move back along their motion (a face entering fast)
    frames[10:] = [_frame(10, {4: tight}, {4}), _frame(11, {4: [144, 510, 389, 811]}, {4})]
    out = _run(frames, depth=20)
    assert _covers(out[5], [144, 690, 389, 991])


def test_without_depth_nothing_is_delayed_or_added():
    frames = [_frame(0, {}, set()), _frame(1, {1: [5, 5, 9, 9]}, {1})]
    lb = Lookback(0)
    assert [len(list(lb.push(f))) for f in frames] == [1, 1]
    assert len(frames[0].faces) == 0


class _NoDetector:
    def detect(self, image, index, around=None):
        return Faces.empty()

    def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("mode", ["adversarial-identity", "adversarial-block", "mosaic"])
def test_a_part_of_a_face_found_on_its_own_gets_no_finer_grid(mode):
    """Regression: the tiles found an eye of a 550 px face as its own face; in the block-wise
    modes its box got its own 8-block grid on top of the face's, so the eye came out several
    times finer than the rest of the face."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    face = [300, 80, 850, 630]
    eye = [420, 250, 520, 320]
    cfg = load_config(None, [f'protect.mode="{mode}"'])
    proc = FrameProcessor(cfg, _NoDetector())
    both = Frame.numbered(0, image, faces=Faces.from_boxes([face, eye]))
    alone = Frame.numbered(0, image, faces=Faces.from_boxes([face]))
    assert (proc.protect(both).image == proc.protect(alone).image).all()


class _BlindOnDamage:
    """Finds the one face on intact frames and nothing on damaged ones (a smeared picture);
    records the frames it was asked about."""

    FACE = [200, 120, 300, 220]

    def __init__(self):
        self.asked: list[int] = []

    def detect(self, image, index, around=None):
        self.asked.append(index)
        return Faces.empty() if image[0, 0, 0] == 0 else Faces.from_boxes([self.FACE])

    def close(self) -> None:
        """Nothing to release."""


@pytest.mark.parametrize("policy", ["frame", "faces"])
def test_a_run_of_damaged_frames_never_shows_the_face(policy):
    """Regression (the UDP packet-loss test failed under load): over a lossy link the decoder
    patched a keyframe, and the 29 frames predicted from it showed the face half smeared, half
    bare; the detector found nothing there, the track ended after max_missed frames and the
    mouth went out bare. "frame" protects such frames whole, without running the detector;
    "faces" holds the tracks through them."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, (360, 640, 3), dtype=np.uint8)
    smeared = image.copy()
    smeared[0, 0, 0] = 0  # the detector's cue
    detector = _BlindOnDamage()
    proc = FrameProcessor(load_config(None, [f'protect.damaged="{policy}"',
                                             'protect.mode="mosaic"']), detector)
    x0, y0, x1, y1 = _BlindOnDamage.FACE
    frames = [Frame.numbered(i, image if i < 3 else smeared,
                    damaged=i >= 3) for i in range(3 + 30)]
    out = [proc.protect(proc.analyze(f)) for f in frames]
    for i, frame in enumerate(out):
        face = frame.image[y0:y1, x0:x1].astype(int)
        assert np.abs(face - image[y0:y1, x0:x1]).mean() > 20, f"frame {i}: the face is bare"
    background = [np.abs(f.image[:, 400:].astype(int) - image[:, 400:]).mean() for f in out]
    assert proc.damaged == 30
    if policy == "frame":
        assert proc.failed_closed == 30 and detector.asked == [0, 1, 2]
        assert min(background[3:]) > 20  # protected whole
    else:
        assert proc.failed_closed == 0 and len(detector.asked) == 33
        assert max(background) == 0  # only the face


class _Walking:
    """One 100 px face walking 6 px a frame; blind on damaged (cue-marked) frames."""

    def detect(self, image, index, around=None):
        x = 100 + 6 * index
        return Faces.empty() if image[0, 0, 0] == 0 else Faces.from_boxes([[x, 100, x + 100,
                                                                             200]])

    def close(self) -> None:
        """Nothing to release."""


def test_a_walking_face_keeps_its_track_through_a_damaged_run():
    """The tracks move on through frames protected whole for damage, so the face is met where
    it walked to and keeps its track, and with it its mosaic's grid (one grid per track is
    what keeps averaged frames from adding detail). Frozen, the track would have been left
    126 px behind and a new one started."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    image = np.full((360, 640, 3), 128, np.uint8)
    smeared = image.copy()
    smeared[0, 0, 0] = 0
    proc = FrameProcessor(load_config(None, ['protect.mode="mosaic"']), _Walking())
    ids = []
    for i in range(40):
        damaged = 10 <= i < 30
        frame = proc.analyze(Frame.numbered(i, smeared if damaged else image,
                                   damaged=damaged))
        if not damaged:
            ids.extend(int(t) for t in frame.faces.track_id)
    assert proc.failed_closed == 20
    assert set(ids) == {0} and len(ids) == 20


class _Slow:
    """A detector that takes 5-25 ms, finds one face whose score names the frame, and fails
    on every seventh frame; it records when each detection ran."""

    def __init__(self, log):
        self.log = log
        self.rng = np.random.default_rng(len(log))

    def detect(self, image, index, around=None):
        import time

        start = time.monotonic()
        time.sleep(float(self.rng.uniform(0.005, 0.025)))
        self.log.append((index, start, time.monotonic()))
        if index % 7 == 3:
            raise RuntimeError("no")
        return Faces.from_boxes([[100, 100, 160, 160]], [(index + 1) / 1000])

    def close(self):
        """Nothing to release."""


def test_overlapped_detection_keeps_the_order_fails_closed_and_overlaps():
    from streamguard.config import Config
    from streamguard.frames import Passthrough
    from streamguard.process import FrameProcessor, OverlappedDetection

    log = []
    processor = FrameProcessor(Config(), detector=_Slow(log))
    overlapped = OverlappedDetection(processor, 3, make_detector=lambda: _Slow(log))
    items = []
    for i in range(40):
        items.append(Frame.numbered(i, np.zeros((240, 320, 3), np.uint8)))
        if i % 5 == 0:
            items.append(Passthrough(packet=f"audio {i}", stream_index=1))
    out = [done for item in items for done in overlapped.push(item)] + overlapped.flush()
    overlapped.close()
    assert [getattr(o, "index", getattr(o, "packet", None)) for o in out] == \
        [getattr(o, "index", getattr(o, "packet", None)) for o in items]  # the input order
    for frame in (o for o in out if isinstance(o, Frame)):
        if frame.index % 7 == 3:
            assert frame.failed_closed  # protected whole, counted
        else:
            assert not frame.failed_closed
            assert frame.faces.score[0] == pytest.approx((frame.index + 1) / 1000)
    assert processor.failed_closed == sum(i % 7 == 3 for i in range(40))
    spans = sorted((s, e) for _, s, e in log)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # detections ran at once


class _Counting:
    """Finds one face moving 6 px per frame (right), and logs the indexes it is called with."""

    def __init__(self):
        self.calls = []

    def detect(self, image, index, around=None):
        self.calls.append(index)
        x = 100 + 6 * int(image[0, 0, 0])  # the frame number, written in the picture
        return Faces.from_boxes([[x, 100, x + 60, 160]], [0.9])

    def close(self):
        """Nothing to release."""


def test_detecting_every_second_frame_covers_the_frames_between():
    """`detect.every = 2`: the detector sees even frames only, is told the count of its runs
    (which paces its tiles), and the face is still covered on every odd frame."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    detector = _Counting()
    processor = FrameProcessor(load_config(None, ["detect.every=2"]), detector=detector)
    lookback = Lookback(4)
    out = []
    for i in range(20):
        image = np.full((240, 320, 3), i, np.uint8)
        out += lookback.push(processor.analyze(Frame.numbered(i, image)))
    out += lookback.flush()
    assert detector.calls == list(range(10))
    for frame in out[1:]:
        x = 100 + 6 * frame.index
        assert _covers(frame, [x, 100, x + 60, 160]), frame.index


class _Spanned(_Counting):
    """_Counting that also takes how many frames each look stands for, and logs it."""

    def __init__(self):
        super().__init__()
        self.spans = []

    def detect(self, image, index, around=None, span=1):
        self.spans.append(span)
        return super().detect(image, index, around)


@pytest.mark.parametrize("how", ["every", "budget"])
def test_each_look_is_told_how_many_frames_it_stands_for(how):
    """Looking at every 3rd frame (`detect.every`, or the frame budget's cheapest level),
    each look after the first is told it stands for 3 frames, so the detector takes the
    turned views of the frames between too; a detector that does not take it is not told
    (`_Counting`)."""
    from streamguard.config import load_config
    from streamguard.process import FrameProcessor

    detector = _Spanned()
    overrides = ["detect.every=3"] if how == "every" else []
    processor = FrameProcessor(load_config(None, overrides), detector=detector)
    if how == "budget":
        schedule = processor.budget()
        schedule.level = len(schedule.levels) - 1  # as behind as it gets: every 3rd frame
    for i in range(12):
        found = processor.analyze(Frame.numbered(i, np.full((240, 320, 3), i, np.uint8)))
        if how == "budget":
            schedule.done(found.detected_ids != frozenset(), 0.0, None)
    # the first look stands for its own frame: no frame came before it (standing for 3, it
    # put the turned views of two frames past their turn, and a 60 px upside-down infrared
    # face there from the start of a live stream was found on frame 44, 24 frames bare)
    assert detector.spans == [1, 3, 3, 3]
    assert detector.calls == [0, 1, 2, 3]
