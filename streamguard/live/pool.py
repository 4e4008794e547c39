"""`live.workers = N`: one stream's face detection spread over N processes.

stream --submit (pixels, PUSH)--> N worker processes --boxes (PUSH)--> results(), in order
                                        ^ supervisor thread restarts any that die

The pool knows nothing of the stream: `submit(frame)` sends a frame without blocking (False
when every worker's inbox is full: the caller drops and counts it), `results()` hands back
what came in, strictly in submission order, `restarts` and `error` are its health.

- A frame is kept until its boxes are back. When a worker dies, the frames sent before its
  death that are still missing a moment later come back as `lost` (PUSH does not say which
  worker got which frame); so does a frame not back after `reorder_timeout_s` (a hung worker).
  A lost frame must never be emitted, protected or not: it has no detection.
- The supervisor restarts dead workers; endpoints are ipc:// sockets in a private temporary
  folder.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from streamguard.config import Config
from streamguard.errors import PipelineError
from streamguard.frames import Faces, Frame
from streamguard.io.bus import pack_message, unpack_message
from streamguard.live.worker import run_worker
from streamguard.process import NOT_LOOKED, NotLooked

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
INBOX_HWM = 1  # frames queued per worker: beyond that a frame is dropped, not delayed
DEATH_GRACE_S = 0.2  # after a worker died, frames sent before it are awaited this much longer


@dataclass(frozen=True)
class Result:
    """One submitted frame back from the workers. `found` None with `failure`: detection failed
    there (fail the frame closed); NOT_LOOKED: a frame `detect.every` skips; `lost`: no
    detection will come (never emit the frame)."""

    frame: Frame
    found: Faces | NotLooked | None
    failure: str | None = None
    lost: bool = False


class WorkerPool:
    """N detection worker processes for one stream; see the module docstring."""

    def __init__(self, cfg: Config, n: int, name: str, reorder_timeout_s: float):
        self.name = name
        self.n = n
        self._timeout = reorder_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="streamguard-live-"))
        self.inbox_endpoint = f"ipc://{self._dir}/in"
        self.outbox_endpoint = f"ipc://{self._dir}/out"
        self._ctx = zmq.Context()
        self._push = self._ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.SNDHWM, INBOX_HWM)
        self._push.setsockopt(zmq.LINGER, 0)
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._procs: dict[int, Any] = {}
        self._mp = multiprocessing.get_context("spawn")
        self._cfg_json = cfg.model_dump_json()
        self._sent: dict[int, float] = {}  # index -> send time, until its result is back
        self._frames: dict[int, Frame] = {}  # index -> the frame, until its result is back
        self._next_send = 0
        self._next_result = 0
        self._waiting: dict[int, dict] = {}  # results that arrived ahead of their turn
        self._death: tuple[float, int] | None = None  # (when, frames sent by then)
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name=f"{name}-supervise",
                                            daemon=True)
        self.ready: set[int] = set()
        self.restarts = 0
        self.passed_on = 0  # frames that needed no detection (`pass_on`)
        self.error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the workers and wait until each has loaded its detector."""
        self._push.bind(self.inbox_endpoint)
        self._pull.bind(self.outbox_endpoint)
        for i in range(self.n):
            self._spawn(i)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.ready) < self.n:
            if self._pull.poll(200):
                header, _ = unpack_message(self._pull.recv_multipart(copy=False))
                if "ready" in header:
                    self.ready.add(header["ready"])
            dead = [i for i, p in self._procs.items() if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                self.close()
                raise PipelineError(f"{self.name}: live worker(s) {dead or 'all'} failed to start")
        self._supervisor.start()
        log.info("%s: %d worker processes ready", self.name, self.n)

    def _spawn(self, i: int) -> None:
        proc = self._mp.Process(target=run_worker, name=f"streamguard-worker-{i}",
                                args=(self._cfg_json, self.inbox_endpoint,
                                      self.outbox_endpoint, i, self.n), daemon=True)
        proc.start()
        self._procs[i] = proc

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values()]

    def close(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        for proc in self._procs.values():
            if proc.exitcode is None:
                proc.terminate()
        for proc in self._procs.values():
            proc.join(5)
            if proc.exitcode is None:
                proc.kill()
                proc.join(5)
        self._push.close(0)
        self._pull.close(0)
        self._ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the stream's side ------------------------------------------------------------------
    def submit(self, frame: Frame, around: np.ndarray | None = None) -> bool:
        """Send a frame (and where tracked faces are expected) to a free worker without
        waiting; False when every inbox is full."""
        index = self._next_send
        self._frames[index] = frame
        header: dict[str, Any] = {"index": index}
        if around is not None:
            header["around"] = np.asarray(around, np.float32).round(1).tolist()
        try:
            self._push.send_multipart(pack_message(header, frame.image), copy=False,
                                      flags=zmq.NOBLOCK)
        except zmq.Again:  # every worker is full: the caller drops, never waits
            del self._frames[index]
            return False
        self._sent[index] = time.monotonic()
        self._next_send += 1
        return True

    def pass_on(self, frame: Frame) -> None:
        """A frame that needs no detection (protected whole: lost video data damaged it): it
        takes its place in the results, not looked at, without going to a worker. (Its
        result is in place before its index counts as sent: the collect thread never sees it
        missing.)"""
        index = self._next_send
        self._frames[index] = frame
        self._waiting[index] = {"index": index, "not_looked": True}
        self._next_send += 1
        self.passed_on += 1

    def results(self, wait_ms: int = 20) -> list[Result]:
        """Whatever is ready, in submission order (waits up to `wait_ms` for a message)."""
        if self._pull.poll(wait_ms):
            header, _ = unpack_message(self._pull.recv_multipart(copy=False))
            if "ready" in header:
                self.ready.add(header["ready"])
            elif header["index"] >= self._next_result:
                self._waiting[header["index"]] = header
        out: list[Result] = []
        now = time.monotonic()
        while True:
            index = self._next_result
            if index in self._waiting:
                header = self._waiting.pop(index)
                found = (NOT_LOOKED if header.get("not_looked") else
                         Faces.from_boxes(header["xyxy"], header["score"])
                         if "xyxy" in header else None)
                out.append(Result(self._take(index), found, header.get("failure")))
            elif index < self._next_send and self._lost(index, now):
                log.warning("%s: frame %d lost with its worker (or over %.0f ms late); skipped",
                            self.name, index, self._timeout * 1000)
                out.append(Result(self._take(index), None, "lost", lost=True))
            else:
                return out
            self._next_result += 1

    def _take(self, index: int) -> Frame:
        self._sent.pop(index, None)
        return self._frames.pop(index)

    def _lost(self, index: int, now: float) -> bool:
        """A missing frame is given up when its worker surely died or it is far too late."""
        if now - self._sent.get(index, now) > self._timeout:
            return True
        death = self._death
        return death is not None and index < death[1] and now - death[0] > DEATH_GRACE_S

    def _supervise(self) -> None:
        try:
            while not self._stop.wait(0.5):
                for i, proc in list(self._procs.items()):
                    if proc.exitcode is not None:
                        log.error("%s: worker %d died (exit %s); restarting", self.name, i,
                                  proc.exitcode)
                        self.ready.discard(i)
                        self._death = (time.monotonic(), self._next_send)
                        self.restarts += 1
                        self._spawn(i)
        except BaseException as exc:  # the stream sees it and stops; `serve` restarts it
            self.error = exc
