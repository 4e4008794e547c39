"""A live stream's fan-out: every protected frame (or placeholder) to each of its outputs
(ZeroMQ PUB, RTSP publish, rolling recordings), with the camera's audio copied alongside.

Only the stream's output stage calls `emit`, and only with protected frames or placeholders.
The outputs' clock: a frame keeps its pts (the camera's time plus the connection's offset,
set at the source), placeholders follow the wall clock, and where the two interleave the pts
is nudged so every output's pts only ever increases (90 kHz).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import av
import av.error
import numpy as np

from streamguard.config import Config, StreamConfig
from streamguard.frames import Frame
from streamguard.io.bus import ZmqPublisher
from streamguard.io.publish import LIVE_TIME_BASE, AudioTemplate, RtspPublisher, SegmentRecorder
from streamguard.io.camera import Backoff
from streamguard.report import StreamStats

log = logging.getLogger(__name__)


class Outputs:
    """The outputs of one stream (`StreamConfig`), their clock and the audio they carry."""

    def __init__(self, scfg: StreamConfig, cfg: Config, stats: StreamStats, t0: float):
        live = cfg.live
        self.name = scfg.name
        self.stats = stats
        self._t0 = t0
        self._placeholder = live.placeholder
        self._placeholder_s = 1.0 / live.placeholder_fps
        self.sinks: list[Any] = []
        if scfg.zmq:
            self.sinks.append(ZmqPublisher(scfg.zmq, scfg.name, LIVE_TIME_BASE))
        if scfg.publish:
            self.sinks.append(RtspPublisher(
                scfg.publish, Backoff(live.reconnect_initial_s, live.reconnect_max_s),
                encode=live.encode))
        if scfg.record_dir:
            self.sinks.append(SegmentRecorder(scfg.record_dir, scfg.name, scfg.segment_s,
                                              fmt=scfg.record_format, encode=live.encode))
        self._audio: AudioTemplate | None = None
        self._audio_q: deque[tuple[bytes, int, bool]] = deque(maxlen=512)
        self._audio_lock = threading.Lock()
        self._last_pts = -1
        self._index = 0
        self.last_image: np.ndarray | None = None  # the latest frame the outputs got

    # -- audio (from the reader's thread) ---------------------------------------------------
    def use_audio(self, audio: Any) -> None:
        """Outputs carry the first connection's audio stream; later connections must match."""
        if audio is None:
            return
        if self._audio is None:
            try:
                self._audio = AudioTemplate(audio)
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("%s: the camera's %s audio cannot be carried (%s); video only",
                            self.name, audio.codec_context.name, exc)
                return
            for sink in self.sinks:
                if hasattr(sink, "audio"):
                    sink.audio = self._audio.stream
        elif audio.codec_context.name != self._audio.codec:
            log.warning("%s: the camera's audio changed codec (%s -> %s); not carried",
                        self.name, self._audio.codec, audio.codec_context.name)

    def queue_audio(self, packet: Any, t_out: float) -> None:
        """An audio packet at `t_out` on the output clock, sent with the next video frame."""
        if self._audio is None:
            return
        with self._audio_lock:
            self._audio_q.append((bytes(packet), int(t_out / LIVE_TIME_BASE),
                                  packet.is_keyframe))

    # -- video (from the output stage only) -------------------------------------------------
    def emit(self, frame: Frame, placeholder: bool = False) -> None:
        pts = max(frame.pts, self._last_pts + 1)
        self._last_pts = pts
        frame = frame.replace(index=self._index, pts=pts)
        self._index += 1
        for sink in self.sinks:
            sink.write(frame, placeholder)
        self._flush_audio()
        self.last_image = frame.image
        self.stats.frames_out += 1

    def failures(self) -> tuple[int, str]:
        """Failed tries to deliver, over the outputs that retry (RTSP publish), and why one
        is failing now ("" when all deliver)."""
        count = sum(getattr(sink, "failures", 0) for sink in self.sinks)
        why = next((sink.last_failure for sink in self.sinks
                    if getattr(sink, "last_failure", "")), "")
        return count, why

    def placeholder(self) -> None:
        """One placeholder frame on the wall clock (black, or the last frame out); nothing
        before the first real frame."""
        if self.last_image is None:
            return
        image = (self.last_image if self._placeholder == "last"
                 else np.zeros_like(self.last_image))
        self.stats.placeholders += 1
        self.stats.placeholder_s += self._placeholder_s
        pts = int((time.monotonic() - self._t0) / LIVE_TIME_BASE)
        self.emit(Frame(-1, pts, LIVE_TIME_BASE, image), placeholder=True)

    def _flush_audio(self) -> None:
        with self._audio_lock:
            packets = list(self._audio_q)
            self._audio_q.clear()
        for data, pts, key in packets:
            for sink in self.sinks:
                packet = av.Packet(data)  # a muxer consumes its packet: one copy per output
                packet.is_keyframe = key
                sink.write_audio(packet, pts)
            self.stats.audio_packets += 1

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except (av.error.FFmpegError, OSError) as exc:
                log.warning("%s: closing an output failed: %s", self.name, exc)
        if self._audio is not None:
            self._audio.close()
