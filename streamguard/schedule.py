"""The frame budget: when detection cannot keep up with the frame rate, detect on fewer frames
instead of dropping frames.

`DetectSchedule` holds the level in force: detection on every frame, every 2nd, every 3rd...
(`every`). The tiles, paced by the detector's own runs, come round less often with it. On the
frames between, the tracks coast along their motion, their boxes grown by the face's speed
(`Tracker.coast`), and the look-back covers what a look finds late and puts the boxes between
two looks onto the frames between, so a moving face stays covered. Nothing is ever emitted without protection: a skipped
frame is protected where its faces are expected.

After each frame the caller says what it cost (`done`), with the frame interval and how many
frames wait behind it. The schedule predicts each level's cost per frame from what looked-at
and coasted frames cost lately, goes one level cheaper at once when the current one cannot
keep up (or frames queue up), and one level richer only after `settle_s` in which the richer
level would have fit with room to spare, so it returns to full detection once the load goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

_ALPHA = 0.2  # weight of the newest measurement in the running costs
_FIT = 0.8  # a richer level is taken back when it would use at most this share of a frame
_BEHIND = 0.95  # the current level is given up when it uses more than this share
_SETTLE_FRAMES = 8  # frames a new level is given before it is judged (its costs settle)


class DetectSchedule:
    """Which frames the detector looks at, lowered and raised with the load."""

    def __init__(self, levels: Sequence[int] = (1, 2, 3), settle_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        if not levels or any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1:
            raise ValueError(f"schedule levels must rise from 1 or more: {tuple(levels)}")
        self.levels = tuple(levels)
        self.level = 0
        self.settle_s = settle_s
        self._clock = clock
        self._cost_look: float | None = None  # seconds a looked-at frame costs
        self._cost_coast: float | None = None  # seconds a coasted frame costs
        self._since_look = self.levels[-1]  # the first frame is always looked at
        self._at_level = 0  # frames since the level changed
        self._calm_since: float | None = None
        self._last = clock()
        self.looks = 0  # frames looked at: the detector's run count (it paces its tiles)
        self.seconds = [0.0] * len(self.levels)  # time spent at each level
        self.changes = 0

    @property
    def every(self) -> int:
        return self.levels[self.level]

    @property
    def name(self) -> str:
        return level_name(self.every)

    def look(self) -> bool:
        """Whether the detector looks at the next frame."""
        return self._since_look + 1 >= self.every

    @property
    def span(self) -> int:
        """The frames a look at the next frame stands for: it and those not looked at since
        the last look (at most the cheapest level's); the first look stands for its own frame
        alone (no frame came before it)."""
        if not self.looks:
            return 1
        return min(self._since_look + 1, self.levels[-1])

    def done(self, looked: bool, took_s: float, interval_s: float | None,
             backlog: int = 0) -> None:
        """One frame finished: whether it was looked at, what it cost (seconds), the frame
        interval (None: not known yet) and the frames waiting behind it."""
        now = self._clock()
        self.seconds[self.level] += now - self._last
        self._last = now
        if looked:
            self.looks += 1
            self._since_look = 0
            self._cost_look = _ewma(self._cost_look, took_s)
        else:
            self._since_look += 1
            self._cost_coast = _ewma(self._cost_coast, took_s)
        self._at_level += 1
        if interval_s is None or interval_s <= 0 or self._cost_look is None:
            return
        current = self.cost(self.level)
        settled = self._at_level >= max(_SETTLE_FRAMES, 2 * self.every)
        if self.level + 1 < len(self.levels) and (
                (settled and (current > _BEHIND * interval_s or backlog >= 2))
                or current > 1.25 * interval_s):
            self._change(+1)
        elif (self.level > 0 and backlog == 0 and settled
              and self.cost(self.level - 1) <= _FIT * interval_s):
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.settle_s:
                self._change(-1)
        else:
            self._calm_since = None

    def cost(self, level: int) -> float:
        """Predicted seconds per frame at `level`, from the running costs."""
        every = self.levels[level]
        look = self._cost_look or 0.0
        coast = self._cost_coast if self._cost_coast is not None else 0.1 * look
        return (look + (every - 1) * coast) / every

    def _change(self, step: int) -> None:
        self.level += step
        self._at_level = 0
        self._calm_since = None
        self.changes += 1

    def snapshot(self) -> dict:
        """The level in force and the seconds spent at each (status page, metrics)."""
        return {"schedule": self.name, "schedule_every": self.every,
                "schedule_s": {level_name(e): round(s, 2)
                               for e, s in zip(self.levels, self.seconds)}}


def level_name(every: int) -> str:
    return "full" if every == 1 else f"every-{every}"


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + _ALPHA * (new - old)
