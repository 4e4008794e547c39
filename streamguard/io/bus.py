"""ZeroMQ: the protected-frame PUB output and the message format of live worker processes.

Every message is [header JSON, optional pixel buffer]: `pack_message` sends the pixels without
a copy (`copy=False` on the socket), `unpack_message` views them in place (`np.frombuffer`);
the header says `shape` and `dtype`. A sender must not modify an image after packing it.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import numpy as np

from streamguard.frames import Frame


def pack_message(header: dict[str, Any], image: np.ndarray | None = None) -> list[Any]:
    """[header JSON, pixels] for `send_multipart(..., copy=False)`; `shape`/`dtype` of the
    image are added to the header."""
    if image is None:
        return [json.dumps(header).encode()]
    image = np.ascontiguousarray(image)
    header = {**header, "shape": list(image.shape), "dtype": str(image.dtype)}
    return [json.dumps(header).encode(), image]


def unpack_message(parts: list[Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    """(header, image viewed in place, or None when the message carries no pixels)."""
    header = json.loads(bytes(parts[0]))
    if len(parts) < 2:
        return header, None
    buf = parts[1].buffer if hasattr(parts[1], "buffer") else parts[1]
    image = np.frombuffer(buf, dtype=header["dtype"]).reshape(header["shape"])
    return header, image


class ZmqPublisher:
    """A live output: PUB socket sending [header JSON, pixel buffer] per protected frame.
    Header: stream, index, pts, time_base, shape, dtype, faces (xyxy lists), placeholder.
    A slow subscriber drops frames (high-water mark 30), never blocks the stream.
    See docs/zeromq.md for a consumer."""

    def __init__(self, endpoint: str, stream: str, time_base: Fraction):
        import zmq

        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 30)
        self._sock.bind(endpoint)
        self._stream = stream
        self._time_base = [time_base.numerator, time_base.denominator]

    def write(self, frame: Frame, placeholder: bool) -> None:
        faces = [] if frame.faces is None else frame.faces.xyxy.round(1).tolist()
        header = {"stream": self._stream, "index": frame.index, "pts": frame.pts,
                  "time_base": self._time_base, "faces": faces, "placeholder": placeholder}
        self._sock.send_multipart(pack_message(header, frame.image), copy=False)

    def write_audio(self, packet: Any, pts: int) -> None:
        """ZeroMQ carries video frames only."""

    def close(self) -> None:
        self._sock.close(0)
