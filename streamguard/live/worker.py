"""A live stream's worker process (`serve --workers N`): face detection, the expensive part,
on frames received over ZeroMQ; the boxes go back, the pixels stay with the stream.

Messages (`streamguard.io.bus`): to the worker [header, pixels] with the frame's `index`; back
[header] with index, xyxy and score lists, or `failure` (why detection failed or overran
`detect.timeout_ms`: the stream fails that frame closed). A worker announces itself with
{"ready": worker_id} once its detector is loaded.

Tracking and protection stay in the stream's process, in frame order, so tracks see every
frame exactly as with one worker; they cost a few ms per frame, detection tens.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

log = logging.getLogger(__name__)


def run_worker(cfg_json: str, pull: str, push: str, worker_id: int, n_workers: int = 1) -> None:
    """Process entry point (spawned by `WorkerPool`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    import cv2
    import numpy as np
    import zmq

    from streamguard.config import Config
    from streamguard.detect import create_detector
    from streamguard.frames import Frame
    from streamguard.io.bus import pack_message, unpack_message
    from streamguard.process import NOT_LOOKED, detect_timed

    # N workers share the machine's cores: no worker may start a thread pool of its own size
    cv2.setNumThreads(max(1, (os.cpu_count() or 1) // n_workers))
    cfg = Config.model_validate_json(cfg_json)
    detector = create_detector(cfg.detect)
    timeout_s = cfg.detect.timeout_ms / 1000
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.setsockopt(zmq.RCVHWM, 1)
    inbox.connect(pull)
    outbox = ctx.socket(zmq.PUSH)
    outbox.setsockopt(zmq.LINGER, 1000)
    outbox.connect(push)
    outbox.send_multipart(pack_message({"ready": worker_id, "pid": os.getpid()}))
    try:
        while True:
            header, image = unpack_message(inbox.recv_multipart(copy=False))
            around = header.get("around")
            found, failure = detect_timed(
                detector, Frame.numbered(header["index"], image), timeout_s,
                None if around is None else np.asarray(around, np.float32).reshape(-1, 4),
                cfg.detect.every)
            result: dict[str, Any] = {"index": header["index"], "worker": worker_id}
            if found is NOT_LOOKED:
                result["not_looked"] = True
            elif found is None:
                result["failure"] = failure
            else:
                result["xyxy"] = found.xyxy.tolist()
                result["score"] = found.score.tolist()
            outbox.send_multipart(pack_message(result))
    finally:
        detector.close()
        inbox.close(0)
        outbox.close()
        ctx.term()
