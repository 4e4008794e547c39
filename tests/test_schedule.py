"""The frame budget (`streamguard.schedule.DetectSchedule`), on a clock the test moves."""

from __future__ import annotations

import pytest

from streamguard.schedule import DetectSchedule

FRAME = 1 / 30


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(schedule: DetectSchedule, clock: Clock, frames: int, look_s: float,
         coast_s: float = 0.002, backlog: int = 0) -> list[bool]:
    looked = []
    for _ in range(frames):
        look = schedule.look()
        clock.t += FRAME
        schedule.done(look, look_s if look else coast_s, FRAME, backlog)
        looked.append(look)
    return looked


def test_a_detector_slower_than_the_frame_rate_gets_a_cheaper_level_that_fits():
    clock = Clock()
    schedule = DetectSchedule((1, 2, 3), clock=clock)
    looked = _run(schedule, clock, 90, look_s=0.050)  # 50 ms a look, 33 ms a frame
    assert schedule.every == 2  # (50 + 2) / 2 = 26 ms a frame fits; every 3rd is not needed
    assert sum(looked[-30:]) == 15  # every 2nd frame looked at, steadily
    assert schedule.snapshot()["schedule"] == "every-2"


def test_it_goes_back_to_full_detection_once_the_load_goes():
    clock = Clock()
    schedule = DetectSchedule((1, 2, 3), settle_s=1.0, clock=clock)
    _run(schedule, clock, 90, look_s=0.080)
    assert schedule.every == 3
    _run(schedule, clock, 45, look_s=0.010)  # 1.5 s of light load
    assert schedule.every in (1, 2)
    _run(schedule, clock, 60, look_s=0.010)
    assert schedule.every == 1
    seconds = schedule.snapshot()["schedule_s"]
    assert seconds["every-3"] > 0 and seconds["full"] > 0
    assert sum(seconds.values()) == pytest.approx(195 * FRAME)


def test_frames_queueing_up_mean_cheaper_even_when_the_costs_look_fine():
    clock = Clock()
    schedule = DetectSchedule((1, 2, 3), clock=clock)
    _run(schedule, clock, 20, look_s=0.020, backlog=2)
    assert schedule.every > 1


def test_a_load_that_fits_never_leaves_full_detection():
    clock = Clock()
    schedule = DetectSchedule((1, 2, 3), clock=clock)
    assert all(_run(schedule, clock, 300, look_s=0.025))
    assert schedule.changes == 0


@pytest.mark.parametrize("levels", [(), (2, 1), (0, 1), (1, 1)])
def test_levels_must_rise_from_one_or_more(levels):
    with pytest.raises(ValueError, match="levels"):
        DetectSchedule(levels)
