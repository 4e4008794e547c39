"""BlazeFace on torch (`detect.runtime = "torch"`): the pinned .tflite graphs read into torch
give LiteRT's outputs, boxes and scores on real footage, batched; the conversion refuses a
file that is not the pinned one and is kept for later starts."""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
import torch

from streamguard.assets import ASSETS, DETECTOR_MODELS, asset_path
from streamguard.config import DetectConfig
from streamguard.detect import create_detector
from streamguard.detect.blazeface import LiteBlazeFace
from streamguard.detect.ssd import SPECS
from streamguard.detect.geometry import box_iou, padded_crop, tile_grid
from streamguard.detect.tflite_graph import build_module, read_graph
from streamguard.detect.torch_blazeface import TorchBlazeFace, converted
from streamguard.errors import ModelUnavailableError
from media import load_rgb

MODELS = ["full_range", "short_range"]


def real_frames() -> list[np.ndarray]:
    """Frames of the registry's real face videos (every 15th) and its photos."""
    frames = [load_rgb(name) for name in ("obama.jpg", "biden.jpg", "multi_face.jpg")]
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov"):
        with av.open(str(asset_path(name))) as c:
            frames += [f.to_ndarray(format="rgb24")
                       for i, f in enumerate(c.decode(video=0)) if i % 15 == 0][:12]
    return frames


@pytest.fixture(scope="module")
def frames():
    return real_frames()


@pytest.mark.parametrize("model", MODELS)
def test_the_graph_in_torch_gives_litert_s_raw_outputs(model):
    """Every operator as LiteRT runs it: the heads' outputs agree to 1e-3 of their range on
    random input (float16 weights dequantized, the full-range model's 46 sparse weights made
    dense, TensorFlow's SAME padding, half-pixel bilinear resizes, depth-to-space)."""
    from ai_edge_litert.interpreter import Interpreter

    path = str(asset_path(DETECTOR_MODELS[model]))
    graph = read_graph(path)
    module = build_module(graph)
    lite = Interpreter(model_path=path)
    lite.allocate_tensors()
    side = SPECS[model].input_side
    x = np.random.default_rng(0).uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
    lite.set_tensor(lite.get_input_details()[0]["index"], x)
    lite.invoke()
    want = {d["name"]: lite.get_tensor(d["index"]) for d in lite.get_output_details()}
    with torch.inference_mode():
        got = module(torch.from_numpy(x))
    for name, out in zip(graph.output_names, got):
        ref = want[name]
        assert out.shape == ref.shape
        assert np.abs(out.numpy() - ref).max() <= 1e-3 * max(np.abs(ref).max(), 1.0), name


@pytest.mark.parametrize("model", MODELS)
def test_boxes_and_scores_match_litert_on_real_footage(model, frames):
    lite, tor = LiteBlazeFace(model, 0.5), TorchBlazeFace(model, 0.5, "cpu")
    try:
        matched = 0
        for k, frame in enumerate(frames):
            want, got = lite(frame), tor(frame)
            assert len(got[0]) == len(want[0]), f"frame {k}: {len(got[0])} vs {len(want[0])} faces"
            for box, score in zip(want[0], want[1]):
                iou = box_iou(box[None], got[0])[0]
                j = int(iou.argmax())
                assert iou[j] >= 0.9 and abs(got[1][j] - score) < 0.01, (k, box, got[0][j])
                matched += 1
        assert matched >= 20  # the check saw faces
    finally:
        lite.close()
        tor.close()


@pytest.mark.parametrize("model", MODELS)
def test_a_batch_gives_each_image_what_it_gets_alone(model):
    img = load_rgb("multi_face.jpg")
    h, w = img.shape[:2]
    crops = [padded_crop(img, *t) for t in tile_grid(w, h, max(w, h) // 2, 0.25)] + [img]
    tor = TorchBlazeFace(model, 0.5, "cpu")
    try:
        alone = [tor(c) for c in crops]
        together = tor.batch(crops)
    finally:
        tor.close()
    for a, b in zip(alone, together):
        assert len(a[0]) == len(b[0])
        np.testing.assert_allclose(a[0], b[0], atol=0.05)
        np.testing.assert_allclose(a[1], b[1], atol=1e-4)


def test_the_tiled_detector_on_torch_finds_the_faces_litert_finds(crops):
    """The whole detector (full frame, tiles, track windows) on a 720p frame of seven faces
    of 40-220 px: the same faces, boxed alike."""
    from media import background, paste

    frame = background(1280, 720, seed=3)
    for i, (crop, px) in enumerate(zip(crops * 2, (40, 56, 80, 120, 160, 220, 48))):
        side = int(px * 1.3)
        x, y = 40 + 175 * i, 60 + (i % 3) * 200
        paste(frame, crop, (x, y, x + side, y + side))
    found = {}
    for runtime in ("litert", "torch"):
        det = create_detector(DetectConfig(runtime=runtime, device="cpu", tile_every=1))
        try:
            found[runtime] = det.detect(frame, 0)
        finally:
            det.close()
    lite, tor = found["litert"], found["torch"]
    assert len(lite) >= 6 and len(tor) == len(lite)
    assert (box_iou(lite.xyxy, tor.xyxy).max(axis=1) >= 0.9).all()


def test_the_conversion_refuses_a_file_that_is_not_the_pinned_one(tmp_path):
    name = DETECTOR_MODELS["full_range"]
    bad = tmp_path / name
    shutil.copy(asset_path(name), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailableError) as err:
        converted(bad, ASSETS[name].sha256, tmp_path / "cache")
    message = str(err.value)
    assert "refusing to convert" in message and "\n" not in message
    assert not (tmp_path / "cache").exists()


def test_the_converted_graph_is_kept_and_later_starts_read_only_that(tmp_path, monkeypatch):
    name = DETECTOR_MODELS["short_range"]
    first = converted(asset_path(name), ASSETS[name].sha256, tmp_path)
    assert (tmp_path / "torch" / "face_detection_short_range.safetensors").is_file()

    def no_parsing(path):
        raise AssertionError("the flatbuffer was parsed again")

    monkeypatch.setattr("streamguard.detect.torch_blazeface.read_graph", no_parsing)
    again = converted(asset_path(name), ASSETS[name].sha256, tmp_path)
    assert [op.kind for op in again.ops] == [op.kind for op in first.ops]
    assert all(np.array_equal(again.constants[k], v) for k, v in first.constants.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_on_cuda_the_boxes_are_the_cpu_s(frames):
    cpu, gpu = TorchBlazeFace("full_range", 0.5, "cpu"), TorchBlazeFace("full_range", 0.5, "cuda")
    try:
        for frame in frames[:10]:
            a, b = cpu(frame), gpu(frame)
            assert len(a[0]) == len(b[0])
            if len(a[0]):
                assert (box_iou(a[0], b[0]).max(axis=1) >= 0.95).all()
    finally:
        cpu.close()
        gpu.close()
