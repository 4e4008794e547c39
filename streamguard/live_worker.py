"""A live stream's worker process (`serve --workers N`): detect, track and protect frames
received over ZeroMQ, send them back protected.

Wire format, both ways: [header JSON, pixel buffer] multipart messages; the pixels travel
without copies on the sending side (`copy=False`) and are viewed in place on the receiving side
(`np.frombuffer`). Frame header: index, shape, dtype, t_in, t_out. Result header adds
faces (xyxy lists), failed_closed and dropped (the fail-closed "drop" policy: no pixels).
A worker announces itself with {"ready": worker_id} once its models are loaded.

Each worker tracks the frames it is given (every Nth frame of the stream with N workers);
detection runs on every frame, so protection never depends on a track surviving.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def encode_frame(header: dict[str, Any], image: np.ndarray | None) -> list[Any]:
    parts: list[Any] = [json.dumps(header).encode()]
    if image is not None:
        parts.append(np.ascontiguousarray(image))
    return parts


def decode_frame(parts: list[Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    header = json.loads(bytes(parts[0]))
    if len(parts) < 2:
        return header, None
    buf = parts[1].buffer if hasattr(parts[1], "buffer") else parts[1]
    image = np.frombuffer(buf, dtype=header["dtype"]).reshape(header["shape"])
    return header, image


def run_worker(cfg_json: str, pull: str, push: str, worker_id: int, n_workers: int = 1) -> None:
    """Process entry point (spawned by `LiveStream`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    import cv2
    import torch
    import zmq

    # N workers share the machine's cores: no worker may start a thread pool of its own size
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    from streamguard.config import Config
    from streamguard.frames import Frame
    from streamguard.pipeline import FrameProcessor

    cfg = Config.model_validate_json(cfg_json)
    cfg = cfg.model_copy(update={"track": cfg.track.model_copy(update={"lookback": 0})})
    processor = FrameProcessor(cfg)
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.setsockopt(zmq.RCVHWM, 1)
    inbox.connect(pull)
    outbox = ctx.socket(zmq.PUSH)
    outbox.setsockopt(zmq.LINGER, 1000)
    outbox.connect(push)
    outbox.send_multipart(encode_frame({"ready": worker_id, "pid": os.getpid()}, None))
    try:
        while True:
            parts = inbox.recv_multipart(copy=False)
            header, image = decode_frame(parts)
            if header.get("stop"):
                break
            frame = Frame(header["index"], None, None, image)
            analyzed = processor.analyze(frame)
            protected = processor.protect(analyzed)
            result = {"index": header["index"], "t_in": header["t_in"],
                      "t_out": header.get("t_out"), "worker": worker_id,
                      "failed_closed": bool(analyzed.failed_closed),
                      "dropped": protected is None, "shape": list(image.shape),
                      "dtype": str(image.dtype)}
            if protected is None:
                outbox.send_multipart(encode_frame(result, None))
                continue
            faces = protected.faces
            result["faces"] = [] if faces is None else faces.xyxy.round(1).tolist()
            outbox.send_multipart(encode_frame(result, protected.image), copy=False)
    finally:
        processor.close()
        inbox.close(0)
        outbox.close()
        ctx.term()
