"""BlazeFace on torch (`detect.runtime = "torch"`): the pinned .tflite graphs read into torch
(`detect.tflite_graph`), with LiteRT's letterbox, anchors and decoding (`detect.ssd`),
every input of a call in one batch, on the CPU or a CUDA GPU.

The graph is converted once per model file and kept as safetensors in the cache
(`torch/<model>.safetensors`, tied to the .tflite's SHA-256): later starts need neither the
`tflite` parser nor the flatbuffer. A .tflite whose checksum differs from the pinned one is
refused (exit 9), as every model file is.

Every torch detector of a process shares one instance of each model (`stages.SharedBatcher`): the
calls of several streams that come together run as one batch (on a GPU, eight streams' tiles
in one call).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from streamguard.assets import ASSETS, DETECTOR_MODELS, asset_path, cache_dir, sha256_file
from streamguard.config import DetectConfig
from streamguard.detect.base import TiledDetector
from streamguard.stages import SharedBatcher
from streamguard.detect.ssd import SPECS, decode, letterbox, score_logits, ssd_anchors
from streamguard.detect.tflite_graph import Graph, build_module, load_graph, read_graph, save_graph
from streamguard.errors import ModelUnavailableError

log = logging.getLogger(__name__)


def converted(path: Path, sha256: str, cache: Path) -> Graph:
    """The graph of the .tflite at `path`, which must have this `sha256`: from the cache when
    it was converted before, else read from the flatbuffer and kept there."""
    got = sha256_file(path)
    if got != sha256:
        raise ModelUnavailableError(f"{path} has sha256 {got[:12]}..., not the pinned "
                                    f"{sha256[:12]}...: refusing to convert it; delete it and "
                                    "run `streamguard fetch`")
    kept = cache / "torch" / f"{path.stem}.safetensors"
    graph = load_graph(kept, sha256)
    if graph is not None:
        return graph
    try:
        graph = read_graph(path)
    except ValueError as exc:
        raise ModelUnavailableError(f"{path}: cannot convert it for torch ({exc})") from None
    kept.parent.mkdir(parents=True, exist_ok=True)
    save_graph(graph, kept, sha256)
    log.info("converted %s for torch: %s", path.name, kept)
    return graph


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("detect.device = \"cuda\" but torch sees no CUDA GPU here")
    return device


class TorchBlazeFace:
    """One BlazeFace model on torch, with `LiteBlazeFace`'s interface: RGB image(s) -> (xyxy
    in image pixels, score, roll in degrees); `batch` runs all its images in one call."""

    def __init__(self, model: str, min_score: float, device: str = "auto",
                 low_score: float | None = None):
        import torch

        name = DETECTOR_MODELS[model]
        self.spec = SPECS[model]
        self.device = pick_device(device)
        graph = converted(asset_path(name, verify=False), ASSETS[name].sha256, cache_dir())
        # outputs sorted by their last side: (N, anchors, 1) scores, (N, anchors, 16) boxes
        order = sorted(range(len(graph.outputs)), key=lambda i: graph.shapes[graph.outputs[i]][-1])
        self._score_out, self._box_out = order
        self._module = build_module(graph).to(self.device)
        self._logit, self._low_logit = score_logits(min_score, low_score)
        self._anchors = ssd_anchors(self.spec)
        self._torch = torch

    def batch(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        if not images:
            return []
        side = self.spec.input_side
        inputs = np.empty((len(images), side, side, 3), np.float32)
        fits = [letterbox(np.asarray(image), side, inputs[k]) for k, image in enumerate(images)]
        torch = self._torch
        with torch.inference_mode():
            outs = self._module(torch.from_numpy(inputs).to(self.device))
            scores = outs[self._score_out][..., 0].float().cpu().numpy()
            boxes = outs[self._box_out].float().cpu().numpy()
        return [decode(scores[k], boxes[k], self._anchors, side, self._logit, fit,
                       self._low_logit)
                for k, fit in enumerate(fits)]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.batch([image])[0]

    def close(self) -> None:
        self._module = None


_SHARED: dict[tuple[str, float, float | None, str], SharedBatcher] = {}
_SHARED_LOCK = threading.Lock()


def shared_model(model: str, min_score: float, device: str,
                 low_score: float | None = None) -> SharedBatcher:
    """The one instance of a model on a device, shared by every torch detector of this
    process (each stream's, each file's run side by side): their calls are batched."""
    device = pick_device(device)
    key = (model, *score_logits(min_score, low_score), device)  # one per distinct decoding
    with _SHARED_LOCK:
        batcher = _SHARED.get(key)
        if batcher is None:
            batcher = _SHARED[key] = SharedBatcher(
                TorchBlazeFace(model, min_score, device, low_score), model)
        batcher.users += 1
        return batcher


def release(batcher: SharedBatcher) -> None:
    """A detector is done with a shared model: the last one closes it."""
    with _SHARED_LOCK:
        batcher.users -= 1
        if batcher.users > 0:
            return
        for key, value in list(_SHARED.items()):
            if value is batcher:
                del _SHARED[key]
    batcher.close()
    batcher.model.close()


class TorchDetector(TiledDetector):
    """The tiled detector on torch: the full-frame pass, then the tiles and track windows,
    each group in one batched call, on a model every torch detector of the process shares
    (`shared_model`): the calls of several streams that come together run as one batch.
    torch spreads each call over the cores (or runs it on the GPU), so no helper thread."""

    def __init__(self, cfg: DetectConfig):
        # the same instance when they decode alike (full range, no edge threshold); each
        # acquisition is released
        full = shared_model(cfg.full_frame_model, cfg.min_score, cfg.device)
        tiles = shared_model("full_range", cfg.min_score, cfg.device, cfg.edge_min_score)
        self._models = [full, tiles]
        super().__init__(full, tiles, cfg)

    def close(self) -> None:
        super().close()
        for model in self._models:
            release(model)
        self._models = []
