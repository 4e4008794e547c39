"""MediaPipe BlazeFace through the Tasks FaceDetector, fed the 0.10.21 model files.

Both models come from the cache filled by `streamguard fetch` (see assets.py). The full-frame
pass uses `detect.full_frame_model`; tiles always use the full-range model, which is the one
that finds small faces.
"""

from __future__ import annotations

import os

import numpy as np

# MediaPipe's C++ side logs model-loading chatter to stderr; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from streamguard.assets import DETECTOR_MODELS, asset_path  # noqa: E402
from streamguard.detect._native import native_stderr_silenced as _native_stderr_silenced  # noqa: E402,E501
from streamguard.config import DetectConfig  # noqa: E402
from streamguard.detect.base import TiledDetector, register_detector  # noqa: E402


def _offset_image(shape: tuple[int, ...], offset: int) -> np.ndarray:
    """A zero image starting `offset` bytes past a 64-byte boundary."""
    n = int(np.prod(shape))
    buf = np.zeros(n + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    return buf[start:start + n].reshape(shape)


class BlazeFace:
    """One BlazeFace model in IMAGE mode: RGB image -> (xyxy, score). Not thread-safe."""

    def __init__(self, model: str, min_score: float):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python import vision

        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(asset_path(DETECTOR_MODELS[model]))),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        with _native_stderr_silenced():
            self._detector = vision.FaceDetector.create_from_options(options)
            # LiteRT logs "Input tensor memory is not aligned ..." (after absl's "Logging
            # before InitGoogle()") once per process, at the first input it must copy: a few
            # inputs that need a copy are run here, while stderr is silenced
            for offset in (1, 16, 0):
                self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                               data=_offset_image((257, 331, 3), offset)))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                  data=np.ascontiguousarray(image))
        found = self._detector.detect(mp_image).detections
        xyxy = np.zeros((len(found), 4), np.float32)
        score = np.zeros(len(found), np.float32)
        for i, det in enumerate(found):
            box = det.bounding_box
            xyxy[i] = (box.origin_x, box.origin_y,
                       box.origin_x + box.width, box.origin_y + box.height)
            score[i] = det.categories[0].score if det.categories else 0.0
        return xyxy, score

    def close(self) -> None:
        with _native_stderr_silenced():
            self._detector.close()


class MediaPipeDetector(TiledDetector):
    def __init__(self, cfg: DetectConfig):
        self._models = [BlazeFace(cfg.full_frame_model, cfg.min_score)]
        if cfg.full_frame_model == "full_range":
            tiles = self._models[0]
        else:
            tiles = BlazeFace("full_range", cfg.min_score)
            self._models.append(tiles)
        super().__init__(self._models[0], tiles, cfg)

    def close(self) -> None:
        for model in self._models:
            model.close()


@register_detector("mediapipe")
def _mediapipe(cfg: DetectConfig) -> MediaPipeDetector:
    return MediaPipeDetector(cfg)
