"""`live.workers = N`: one stream's face detection spread over N processes.

dispatcher --PUSH (pixels)--> N worker processes --PUSH (boxes)--> collector --> outputs
                                   ^ supervisor thread restarts any that die

- The dispatcher takes frames from the stream's drop-oldest queue, keeps each until its
  result is back, and sends the pixels without blocking; when every worker's inbox is full,
  the frame is dropped and counted (the live policy: latency stays bounded).
- The collector takes results strictly in input order and tracks and protects each frame
  in this process (the stream's FrameProcessor): tracks see every frame, as with one worker,
  and only boxes travel back. When a worker dies, the frames sent
  before its death that are still missing a moment later are skipped and counted as dropped
  (PUSH does not say which worker got which frame); a frame not back after
  `live.reorder_timeout_ms` (a hung worker) is skipped too. A skipped frame is never emitted,
  protected or not. It also emits the placeholders while the camera is away, so only this
  thread writes to the outputs.
- The supervisor restarts dead workers (counted in `worker_restarts`); endpoints are ipc://
  sockets in a private temporary folder.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from streamguard.errors import PipelineError
from streamguard.frames import Faces, Frame
from streamguard.live_worker import decode_frame, encode_frame, run_worker

if TYPE_CHECKING:
    from streamguard.live import LiveStream

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
INBOX_HWM = 1  # frames queued per worker: beyond that a frame is dropped, not delayed
DEATH_GRACE_S = 0.2  # after a worker died, frames sent before it are awaited this much longer


class WorkerPool:
    def __init__(self, stream: LiveStream, n: int):
        self.stream = stream
        self.n = n
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
        self._cfg_json = stream.cfg.model_dump_json()
        self._sent: dict[int, float] = {}  # index -> send time, until its result is back
        self._frames: dict[int, Frame] = {}  # index -> the frame, until its result is back
        self._next_send = 0
        self._death: tuple[float, int] | None = None  # (when, frames sent by then)
        self.ready: set[int] = set()

    def threads(self) -> list[threading.Thread]:
        name = self.stream.scfg.name
        return [threading.Thread(target=self._guard(self._dispatch), name=f"{name}-dispatch",
                                 daemon=True),
                threading.Thread(target=self._guard(self._collect), name=f"{name}-collect",
                                 daemon=True),
                threading.Thread(target=self._guard(self._supervise), name=f"{name}-supervise",
                                 daemon=True)]

    def _guard(self, loop):
        def run() -> None:
            try:
                loop()
            except BaseException as exc:  # the stream stops; `serve` restarts it
                self.stream.fail(exc)
        return run

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._push.bind(self.inbox_endpoint)
        self._pull.bind(self.outbox_endpoint)
        for i in range(self.n):
            self._spawn(i)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(self.ready) < self.n:
            if self._pull.poll(200):
                header, _ = decode_frame(self._pull.recv_multipart(copy=False))
                if "ready" in header:
                    self.ready.add(header["ready"])
            dead = [i for i, p in self._procs.items() if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                self.close()
                raise PipelineError(
                    f"{self.stream.scfg.name}: live worker(s) {dead or 'all'} failed to start")
        log.info("%s: %d worker processes ready", self.stream.scfg.name, self.n)

    def _spawn(self, i: int) -> None:
        proc = self._mp.Process(target=run_worker, name=f"streamguard-worker-{i}",
                                args=(self._cfg_json, self.inbox_endpoint,
                                      self.outbox_endpoint, i, self.n), daemon=True)
        proc.start()
        self._procs[i] = proc

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values()]

    def close(self) -> None:
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

    # -- threads -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        stream = self.stream
        while not stream.stop_event.is_set():
            frame = stream.queue.get(timeout=0.1)
            if frame is None:
                continue
            index = self._next_send
            header = {"index": index, "shape": list(frame.image.shape),
                      "dtype": str(frame.image.dtype)}
            self._frames[index] = frame.replace(index=index)
            try:
                self._push.send_multipart(encode_frame(header, frame.image), copy=False,
                                          flags=zmq.NOBLOCK)
            except zmq.Again:  # every worker is full: drop, never wait
                del self._frames[index]
                stream.stats.dropped += 1
                continue
            self._sent[index] = time.monotonic()
            self._next_send += 1

    def _collect(self) -> None:
        stream = self.stream
        processor = stream.processor
        waiting: dict[int, dict] = {}
        next_index = 0
        timeout = stream.live.reorder_timeout_ms / 1000
        idle_every = 1.0 / stream.live.placeholder_fps
        last_out = time.monotonic()
        while not stream.stop_event.is_set():
            if self._pull.poll(20):
                header, _ = decode_frame(self._pull.recv_multipart(copy=False))
                if "ready" in header:
                    self.ready.add(header["ready"])
                elif header["index"] >= next_index:
                    waiting[header["index"]] = header
            now = time.monotonic()
            while True:
                if next_index in waiting:
                    header = waiting.pop(next_index)
                    self._sent.pop(next_index, None)
                    frame = self._frames.pop(next_index)
                    next_index += 1
                    found = (Faces.from_boxes(header["xyxy"], header["score"])
                             if "xyxy" in header else None)
                    protected = processor.protect(
                        processor.apply(frame, found, header.get("failure")))
                    stream.stats.failed_closed = processor.failed_closed
                    if protected is not None:  # None: the fail-closed "drop" policy
                        stream.deliver(protected, frame.meta)
                    last_out = now
                elif next_index < self._next_send and self._lost(next_index, now, timeout):
                    self._sent.pop(next_index, None)
                    self._frames.pop(next_index, None)
                    log.warning("%s: frame %d lost with its worker (or over %.0f ms late); "
                                "skipped", stream.scfg.name, next_index, timeout * 1000)
                    stream.stats.dropped += 1
                    next_index += 1
                else:
                    break
            if now - last_out > idle_every and not stream.stats.connected:
                stream.idle()
                last_out = now

    def _lost(self, index: int, now: float, timeout: float) -> bool:
        """A missing frame is given up when its worker surely died or it is far too late."""
        if now - self._sent.get(index, now) > timeout:
            return True
        death = self._death
        return death is not None and index < death[1] and now - death[0] > DEATH_GRACE_S

    def _supervise(self) -> None:
        stream = self.stream
        while not stream.stop_event.wait(0.5):
            for i, proc in list(self._procs.items()):
                if proc.exitcode is not None:
                    log.error("%s: worker %d died (exit %s); restarting", stream.scfg.name, i,
                              proc.exitcode)
                    self.ready.discard(i)
                    self._death = (time.monotonic(), self._next_send)
                    stream.stats.worker_restarts += 1
                    self._spawn(i)
