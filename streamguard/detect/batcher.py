"""One model, many callers: the detectors of several streams (or of files run side by side)
call one shared model, and calls that arrive while it runs are run together, in one batch.

A GPU runs 8 streams' inputs in one call for little more than one stream's, where 8 separate
calls would pay for 8 launches. No timer holds a call back to wait for company: the model
takes every call waiting when it becomes free, so a lone caller runs at once and callers
that come together share a batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


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
