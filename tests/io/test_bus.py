"""io/bus.py: the ZeroMQ message format and the protected-frame publisher."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import zmq

from streamguard.frames import Faces, Frame
from streamguard.io.bus import ZmqPublisher, pack_message, unpack_message


def test_a_message_round_trips_pixels_and_header_without_copying_on_the_way_in():
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    parts = pack_message({"index": 7}, image)
    header, back = unpack_message([parts[0], memoryview(parts[1]).tobytes()])
    assert header == {"index": 7, "shape": [48, 64, 3], "dtype": "uint8"}
    assert (back == image).all()
    assert unpack_message(pack_message({"ready": 1})) == ({"ready": 1}, None)


def test_a_subscriber_gets_the_frame_its_faces_and_its_time():
    ctx = zmq.Context.instance()
    endpoint = "inproc://streamguard-bus-test"
    pub = ZmqPublisher(endpoint, "door", Fraction(1, 90000))
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    image = np.full((16, 24, 3), 9, np.uint8)
    frame = Frame(3, 6000, Fraction(1, 90000), image,
                  faces=Faces.from_boxes([[1, 2, 10, 12]]))
    try:
        for _ in range(50):  # the first sends may precede the subscription (PUB/SUB)
            pub.write(frame, placeholder=False)
            if sub.poll(20):
                break
        header, buf = sub.recv_multipart()
    finally:
        sub.close(0)
        pub.close()
    h = json.loads(header)
    assert h["stream"] == "door" and h["index"] == 3 and h["pts"] == 6000
    assert h["time_base"] == [1, 90000] and h["faces"] == [[1.0, 2.0, 10.0, 12.0]]
    assert h["placeholder"] is False
    assert (np.frombuffer(buf, np.uint8).reshape(h["shape"]) == 9).all()
