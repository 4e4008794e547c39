"""Progress for people and for logs: one implementation for single-machine and Ray runs.

On a terminal it is a tqdm bar (frames, fps, ETA). When stderr is not a terminal (a service,
CI, `2> file`), a bar's carriage returns would fill the log with junk: a plain line every
`every_s` seconds is written through logging instead (the run's own summary line ends it).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("streamguard.progress")


class Progress:
    """`update(done, total, note)` as often as you like; `close()` at the end.

    enabled=False shows nothing; tty=None asks the stream whether it is a terminal."""

    def __init__(self, label: str, *, enabled: bool = True, unit: str = "frames",
                 every_s: float = 10.0, stream: TextIO | None = None, tty: bool | None = None):
        self.label = label
        self.enabled = enabled
        self.unit = unit
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.start = time.perf_counter()
        self._bar = None
        self._last_line = self.start
        self._done, self._total, self._note = 0, 0, ""

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        self._done, self._total, self._note = done, total or 0, note
        if self.tty:
            self._draw()
        elif time.perf_counter() - self._last_line >= self.every_s:
            self._line()

    def _draw(self) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=self._total or None, desc=self.label, unit=f" {self.unit}",
                             file=self.stream, dynamic_ncols=True, mininterval=0.25,
                             leave=True)
        if self._total and self._bar.total != self._total:
            self._bar.total = self._total
        self._bar.n = self._done
        if self._note:
            self._bar.set_postfix_str(self._note, refresh=False)
        self._bar.refresh()

    def _line(self) -> None:
        self._last_line = now = time.perf_counter()
        fps = self._done / max(now - self.start, 1e-6)
        of = f"/{self._total}" if self._total else ""
        note = f", {self._note}" if self._note else ""
        log.info("%s: %d%s %s, %.1f fps%s", self.label, self._done, of, self.unit, fps, note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
