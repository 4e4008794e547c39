"""The one stage system every path runs on: threads (`Stage`) joined by bounded queues
(`Channel`), all watching one `Run`.

- Every queue operation times out in slices and watches the run's stop event, so a stopping
  run never hangs on a queue.
- A `Channel` states what it does when full: `block` (the writer waits: files, and the live
  output queue, whose back-pressure makes detection wait) or `drop_oldest` (the oldest waiting
  item goes and is counted: a live camera's input, which bounds the added latency and never
  stops the reader).
- A stage that raises stops the run; its exception is kept for the caller (`Run.errors`),
  never swallowed. Each stage is one thread working in order, so output order is input order.
- A stage may be told to look up when its inbox stays empty (`idle_s`, `on_idle`): a live
  stream keeps its outputs' clock with placeholders while the camera is away.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Overflow = Literal["block", "drop_oldest"]

END = object()  # closes a channel: what was put before it is still delivered
IDLE = object()  # what `Channel.get` returns when nothing came within its timeout


class Stopped(Exception):
    """Raised inside a stage when the run's stop event is set."""


class Run:
    """What the stages of one run share: the stop event, the errors, progress times.

    `on_error(exc)` (optional) is told of the first error as it happens (a live stream
    records it for its status page)."""

    def __init__(self, stop: threading.Event | None = None,
                 on_error: Callable[[BaseException], None] | None = None):
        self.stop = stop if stop is not None else threading.Event()
        self.errors: list[BaseException] = []
        self.progress: dict[str, float] = {}  # stage -> last progress time (monotonic)
        self._lock = threading.Lock()
        self._on_error = on_error

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)
            first = len(self.errors) == 1
        if first and self._on_error is not None:
            self._on_error(exc)
        self.stop.set()

    def tick(self, stage: str) -> None:
        self.progress[stage] = time.monotonic()


class Channel:
    """A bounded queue between two stages, with a stated overflow policy.

    `block`: `put` waits (in `poll_s` slices, watching the stop event) while the channel is
    full. `drop_oldest`: `put` never waits; when the channel is full the oldest item is
    dropped, counted in `dropped` and handed to `on_drop` (the caller's own counter)."""

    def __init__(self, run: Run, size: int, poll_s: float = 0.1, overflow: Overflow = "block",
                 on_drop: Callable[[Any], None] | None = None):
        if overflow not in ("block", "drop_oldest"):
            raise ValueError(f"unknown overflow policy {overflow!r}")
        self._run = run
        self._size = max(int(size), 1)
        self.poll_s = poll_s
        self.overflow = overflow
        self._on_drop = on_drop
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> None:
        with self._cond:
            while len(self._items) >= self._size and item is not END:
                if self.overflow == "drop_oldest":
                    old = self._items.popleft()
                    self.dropped += 1
                    if self._on_drop is not None:
                        self._on_drop(old)
                    break
                if self._run.stop.is_set():
                    raise Stopped
                self._cond.wait(self.poll_s)
            if self._run.stop.is_set():
                raise Stopped
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        """No more items: readers end after the ones already put."""
        self.put(END)

    def get(self, timeout: float) -> Any:
        """The next item, `IDLE` when none came within `timeout`, `END` once closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._run.stop.is_set():
                    raise Stopped
                left = deadline - time.monotonic()
                if left <= 0:
                    return IDLE
                self._cond.wait(min(left, self.poll_s))
            if self._run.stop.is_set():
                raise Stopped
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.get(self.poll_s)
            if item is END:
                return
            if item is not IDLE:
                yield item


class Stage(threading.Thread):
    """One stage: a thread that runs `step(item)` on each item of its inbox, in order, and
    puts what the step returns into its outbox.

    `inbox` is the previous stage's `Channel`, or for a first stage any iterable (a decoder, a
    camera), whose pulling is then the stage's work. `busy_s` counts only the work, never the
    waits on queues. `idle_s`/`on_idle`: when a Channel inbox stays empty that long, the
    items `on_idle()` returns are emitted. The stage always closes its outbox (after
    `flush()`'s items; `closes_outbox=False`: an input whose end is not the run's, like a
    camera that went away) and hands any exception to the run, which stops the other stages.
    """

    def __init__(self, name: str, run: Run, step: Callable[[Any], Iterable[Any]],
                 inbox: Channel | Iterable[Any], outbox: Channel | None = None,
                 flush: Callable[[], Iterable[Any]] | None = None,
                 idle_s: float | None = None,
                 on_idle: Callable[[], Iterable[Any]] | None = None,
                 thread_name: str | None = None, closes_outbox: bool = True):
        super().__init__(name=thread_name or f"streamguard-{name}", daemon=True)
        self.stage = name
        self._run = run
        self._step = step
        self._inbox = inbox
        self._outbox = outbox
        self._flush = flush
        self._idle_s = idle_s
        self._on_idle = on_idle
        self._closes_outbox = closes_outbox
        self.busy_s = 0.0
        self.tap: Callable[[Any], None] | None = None  # sees each item taken (tracing, tests)

    def _emit(self, items: Iterable[Any]) -> None:
        if self._outbox is not None:
            for item in items:
                self._outbox.put(item)
        else:
            for _ in items:  # a last stage's step may still be a generator: run it
                pass

    def _items(self) -> Iterator[Any]:
        if not isinstance(self._inbox, Channel):
            yield from self._inbox
            return
        wait = self._idle_s if self._idle_s is not None else self._inbox.poll_s
        while True:
            item = self._inbox.get(wait)
            if item is END:
                return
            if item is IDLE:
                if self._on_idle is not None:
                    self._emit(self._on_idle())
                continue
            yield item

    def run(self) -> None:
        self._run.tick(self.stage)
        pulling_is_work = not isinstance(self._inbox, Channel)
        try:
            items = self._items()
            while True:
                t = time.perf_counter()
                item = next(items, END)
                if item is END:
                    break
                if self.tap is not None:
                    self.tap(item)
                if not pulling_is_work:
                    t = time.perf_counter()
                out = self._step(item)
                self.busy_s += time.perf_counter() - t
                self._emit(out)
                self._run.tick(self.stage)
            if self._flush is not None:
                self._emit(self._flush())
            if self._outbox is not None and self._closes_outbox:
                self._outbox.close()
        except Stopped:
            return  # another stage failed or the run was stopped: its error is already recorded
        except BaseException as exc:  # handed to the caller, never swallowed
            self._run.fail(exc)


# -- one model, many callers ---------------------------------------------------------------
# The detectors of several streams (or of files run side by side) call one shared model, and
# calls that arrive while it runs are run together, in one batch: a GPU runs 8 streams'
# inputs in one call for little more than one stream's. No timer holds a call back to wait
# for company: the model takes every call waiting when it becomes free, so a lone caller runs
# at once. Each caller waits for its own call, so the calls waiting are at most the callers.

@dataclass
class _Call:
    images: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Any] | None = None
    error: BaseException | None = None


class SharedBatcher:
    """`batch(images)` / `__call__(image)` like the model's own, from any thread; the model
    (anything with `batch(images) -> list`) runs on the batcher's thread. `calls`,
    `batches` and `largest` (images in the largest batch) say how well calls came together."""

    def __init__(self, model: Any, name: str):
        self.model = model
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._closed = False
        self.calls = self.batches = self.largest = 0
        self.users = 0  # detectors sharing it (the registry's count)
        self._thread = threading.Thread(target=self._run, name=f"streamguard-batch-{name}",
                                        daemon=True)
        self._thread.start()

    def batch(self, images: list[Any]) -> list[Any]:
        if not images:
            return []
        call = _Call(list(images))
        with self._cond:
            if self._closed:
                raise RuntimeError("the shared detector model was closed")
            self._waiting.append(call)
            self._cond.notify_all()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def __call__(self, image: Any) -> Any:
        return self.batch([image])[0]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return  # closed, nothing left
                calls, self._waiting = self._waiting, []
            images = [image for call in calls for image in call.images]
            try:
                results, error = self.model.batch(images), None
            except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
                results, error = None, exc
            at = 0
            for call in calls:
                if error is None:
                    call.result = results[at:at + len(call.images)]
                    at += len(call.images)
                else:
                    call.error = error
                call.done.set()
            self.calls += len(calls)
            self.batches += 1
            self.largest = max(self.largest, len(images))

    def close(self) -> None:
        """Finish the calls already made, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)
