"""Face detection: `create_detector(cfg.detect)` by registered name.

`base` holds the protocol, the registry, tiles and NMS; `blazeface` MediaPipe's BlazeFace
models on LiteRT and `mediapipe` the same models through MediaPipe Tasks, registered when
first asked for (their modules load nothing heavy until a detector is built).
"""

from __future__ import annotations

from streamguard.config import DetectConfig
from streamguard.detect.base import DETECTORS, Detector, register_detector


def _load_builtin() -> None:
    from streamguard.detect import blazeface, mediapipe  # noqa: F401


def available_detectors() -> list[str]:
    _load_builtin()
    return DETECTORS.names()


def create_detector(cfg: DetectConfig) -> Detector:
    """The detector `cfg.detector` names; a ConfigError naming the known ones otherwise."""
    _load_builtin()
    return DETECTORS.lookup(cfg.detector)(cfg)


__all__ = ["Detector", "available_detectors", "create_detector", "register_detector"]
