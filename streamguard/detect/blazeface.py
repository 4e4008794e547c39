"""BlazeFace run directly on LiteRT: MediaPipe's face detector models without MediaPipe's graph.

MediaPipe's Tasks FaceDetector spends ~40 % of a call outside the model (image packets, its
dispatch thread, tensor conversion) and takes one image per call. Here the same .tflite files
run on LiteRT's interpreter (XNNPACK, the GIL released while it computes), and the steps
around the model are MediaPipe's, written out in `detect.ssd` (letterbox, anchors, decoding,
weighted suppression), shared with the torch runtime (`detect.torch_blazeface`).

The tiles and track windows of a frame run one interpreter call each (on XNNPACK a batch
costs more than its images one by one).
"""

from __future__ import annotations

import numpy as np

from streamguard.assets import DETECTOR_MODELS, asset_path
from streamguard.config import DetectConfig
from streamguard.detect._native import native_stderr_silenced
from streamguard.detect.base import TiledDetector, register_detector
from streamguard.detect.ssd import SPECS, decode, letterbox, score_logits, ssd_anchors


class LiteBlazeFace:
    """One BlazeFace model: RGB image(s) -> (xyxy in image pixels, score, roll in degrees,
    counter-clockwise as seen, from the line between the eyes: within about 10 degrees for
    faces up to 45 degrees from upright). Not thread-safe: one per detector, called from
    the detector's thread."""

    def __init__(self, model: str, min_score: float, threads: int = 1,
                 low_score: float | None = None):
        """`low_score` (under `min_score`): the unsure finds from it up to `min_score` come
        too (`ssd.decode`)."""
        from ai_edge_litert.interpreter import Interpreter

        self.spec = SPECS[model]
        self.min_score = min_score
        self._logit, self._low_logit = score_logits(min_score, low_score)
        with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on stderr
            self._interpreter = Interpreter(
                model_path=str(asset_path(DETECTOR_MODELS[model])), num_threads=threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self._scores, self._boxes = outputs[0]["index"], outputs[1]["index"]
        self._anchors = ssd_anchors(self.spec)

    def batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        """Boxes and scores of each image, one interpreter call each: on XNNPACK a batch of n
        costs more than n single calls (4 tiles: 16.6 ms batched, 13.9 one by one), and a
        batch size that changes from frame to frame re-plans the graph each time."""
        return [self._one(np.asarray(img)) for img in images]

    def _one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the interpreter's own input buffer: letterboxed in place, no copy
        fit = letterbox(image, self.spec.input_side, self._interpreter.tensor(self._input)()[0])
        self._interpreter.invoke()
        return decode(self._interpreter.get_tensor(self._scores)[0, :, 0],
                      self._interpreter.get_tensor(self._boxes)[0], self._anchors,
                      self.spec.input_side, self._logit, fit, self._low_logit)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._one(np.asarray(image))

    def close(self) -> None:
        self._interpreter = None


class LiteDetector(TiledDetector):
    """The tiled detector on LiteRT: one interpreter for the full-frame pass, one for the
    tiles and track windows (the full-frame model may differ from the tiles' full-range one),
    and a second tiles interpreter for the helper thread, which runs the full-frame pass and
    a share of the tiles beside them."""

    def __init__(self, cfg: DetectConfig):
        full = LiteBlazeFace(cfg.full_frame_model, cfg.min_score, cfg.threads)
        tiles = LiteBlazeFace("full_range", cfg.min_score, cfg.threads, cfg.edge_min_score)
        helper_tiles = LiteBlazeFace("full_range", cfg.min_score, cfg.threads,
                                     cfg.edge_min_score)
        self._models = [full, tiles, helper_tiles]
        night = None
        if cfg.night_model == "centerface":
            from streamguard.detect.centerface import CenterFace

            night = CenterFace(cfg.night_min_score, threads=cfg.threads)
            self._models.append(night)
        super().__init__(full, tiles, cfg, helper_tiles=helper_tiles, night=night)

    def close(self) -> None:
        super().close()
        for model in self._models:
            model.close()


@register_detector("blazeface")
def _blazeface(cfg: DetectConfig) -> TiledDetector:
    if cfg.runtime == "torch":
        from streamguard.detect.torch_blazeface import TorchDetector

        return TorchDetector(cfg)
    return LiteDetector(cfg)
