"""The engine layer: every available backend matches torch fp32, the cache is reused and
rebuilt when it should be, and `auto` says why it skipped what it skipped."""

import logging
import sys

import numpy as np
import pytest
import torch

from streamguard.backends import EngineSpec, list_cache, load_engine
from streamguard.backends.tensorrt import _import_trt
from streamguard.errors import ConfigError, EngineError
from streamguard.models import create_model

TOL = 1e-4


class Cells(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.g = create_model("blockwise_tiny")

    def forward(self, cells):
        return self.g.cells_to_delta(cells)


SPEC = EngineSpec(("cells",), ((2, 3, 9, 9),), {"cells": {0: (1, 2, 8), 2: (2, 9, 32),
                                                            3: (2, 9, 32)}})


@pytest.fixture(autouse=True)
def engine_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMGUARD_ENGINES", str(tmp_path / "engines"))
    return tmp_path / "engines"


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "compile"])
def test_each_cpu_backend_matches_torch_fp32_on_new_shapes(backend):
    model = Cells()
    engine = load_engine(model, "cells", SPEC, backend)
    for shape in [(1, 3, 9, 9), (3, 3, 13, 17)]:  # dynamic batch and grid
        x = torch.rand(shape)
        with torch.no_grad():
            ref = model(x)
        assert torch.allclose(engine(x), ref, atol=TOL), backend


def test_onnx_cache_is_reused_and_rebuilt_after_the_weights_change(engine_cache):
    first = load_engine(Cells(0), "cells", SPEC, "onnxruntime")
    again = load_engine(Cells(0), "cells", SPEC, "onnxruntime")
    assert not first.info["reused"] and again.info["reused"]
    assert again.info["file"] == first.info["file"]
    changed = load_engine(Cells(1), "cells", SPEC, "onnxruntime")
    assert not changed.info["reused"] and changed.info["file"] != first.info["file"]
    assert len(list_cache(engine_cache)) == 2  # one sidecar per build


def test_a_damaged_cache_entry_is_rebuilt_with_its_reason(engine_cache, caplog):
    first = load_engine(Cells(), "cells", SPEC, "onnxruntime")
    (engine_cache / first.info["file"]).write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING):
        rebuilt = load_engine(Cells(), "cells", SPEC, "onnxruntime")
    assert "rebuilding" in caplog.text and "rebuilt_because" in rebuilt.info
    x = torch.rand(1, 3, 9, 9)
    assert torch.allclose(rebuilt(x), Cells()(x), atol=TOL)


def test_auto_picks_a_working_backend_and_logs_why_tensorrt_was_skipped(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # simulate: not installed
    with pytest.raises(EngineError, match="not installed"):
        _import_trt()
    with caplog.at_level(logging.INFO):
        engine = load_engine(Cells(), "cells", SPEC, "auto")
    assert engine.backend in ("torch", "onnxruntime")
    assert "backend tensorrt unavailable" in caplog.text
    assert "chose" in caplog.text
    assert set(engine.info["auto_timings_ms"]) >= {"torch", "onnxruntime"}


def test_unknown_backend_is_an_error():
    with pytest.raises(ConfigError, match="unknown backend 'fast'"):
        load_engine(Cells(), "cells", SPEC, "fast")


def test_fp16_on_cpu_is_refused_with_the_reason():
    spec = EngineSpec(("cells",), ((1, 3, 9, 9),), precision="fp16")
    with pytest.raises(EngineError, match="CUDA"):
        load_engine(Cells(), "cells", spec, "torch")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@cuda
def test_torch_cuda_fp16_matches_fp32():
    model = Cells()
    spec = EngineSpec(("cells",), ((2, 3, 9, 9),), precision="fp16", device="cuda")
    engine = load_engine(model, "cells", spec, "torch")
    x = torch.rand(2, 3, 9, 9)
    assert torch.allclose(engine(x).cpu(), model(x), atol=1e-2)


@cuda
def test_tensorrt_builds_saves_and_reloads():
    pytest.importorskip("torch_tensorrt", reason="torch_tensorrt is not installed")
    model = Cells()
    spec = EngineSpec(("cells",), ((2, 3, 9, 9),), {"cells": {0: (1, 2, 8)}}, "fp16", "cuda")
    built = load_engine(model, "cells", spec, "tensorrt")
    again = load_engine(model, "cells", spec, "tensorrt")
    assert again.info["reused"]
    x = torch.rand(2, 3, 9, 9)
    assert torch.allclose(again(x).float().cpu(), model(x), atol=1e-2)
    assert built.backend == "tensorrt"


def _protect_sample(device: str, mode: str):
    from streamguard.config import ProtectConfig
    from streamguard.frames import Faces
    from streamguard.protect import build_protector

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    faces = Faces.from_boxes([[40, 40, 140, 150], [180, 60, 260, 150]])
    protector = build_protector(ProtectConfig(mode=mode, device=device))
    return protector(image, faces)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(EngineError, match="no CUDA device"):
        _protect_sample("cuda", "adversarial-identity")


@cuda
@pytest.mark.parametrize("mode", ["adversarial-identity", "adversarial-pixel"])
def test_generators_on_cuda_match_the_cpu(mode):
    """On a GPU node (e.g. a Ray worker with ray.gpus_per_worker > 0) the generator runs on
    CUDA; its output differs from the CPU's by rounding only."""
    cpu = _protect_sample("cpu", mode).astype(int)
    gpu = _protect_sample("cuda", mode).astype(int)
    assert np.abs(cpu - gpu).max() <= 2


def _deltas_in_a_fresh_process(engine_cache, weights_dir) -> dict:
    """The default generator's δ on fixed cells, from a new interpreter: whether it imported
    torch, and what it ran."""
    import json
    import os
    import subprocess

    code = (
        "import json, sys, numpy as np\n"
        "from streamguard.protect.adversarial import cells_engine\n"
        "e = cells_engine('blockwise_identity', 'onnxruntime', 'cpu')\n"
        "x = np.random.default_rng(0).random((2, 3, 9, 11), dtype=np.float32)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'info': e.info,\n"
        "                  'delta': e.numpy(x).tolist()}))\n")
    env = {**os.environ, "STREAMGUARD_ENGINES": str(engine_cache),
           "STREAMGUARD_WEIGHTS": str(weights_dir)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_a_built_generator_starts_again_without_torch_and_gives_the_same_delta(
        engine_cache, tmp_path):
    """`import torch` cost ~1.3 s of every start: once the default generator's engine was
    built, later starts open it with onnxruntime alone, with the same output; changed weights
    are never served from the old engine. Asked for onnxruntime by name: "auto" picks it by
    timing the backends, which a loaded machine (the full suite) can tip to torch, whose
    engine is never reused (`test_reuse_leaves_a_possible_gpu_and_other_backends_to_torch`)."""
    import shutil

    from streamguard.models.weights import weights_dir

    weights = tmp_path / "weights"
    shutil.copytree(weights_dir(), weights)
    first = _deltas_in_a_fresh_process(engine_cache, weights)
    assert first["torch"] and not first["info"].get("without_torch")  # built with torch
    again = _deltas_in_a_fresh_process(engine_cache, weights)
    assert not again["torch"] and again["info"]["without_torch"]
    assert again["info"]["file"] == first["info"]["file"]
    np.testing.assert_allclose(again["delta"], first["delta"], atol=1e-6)
    # other weights under the same name (retrained and shipped): built anew, with torch
    shutil.copy(weights / "blockwise_paper.safetensors",
                weights / "blockwise_identity.safetensors")
    card = weights / "blockwise_identity.json"
    import json

    doc = json.loads(card.read_text())
    doc["sha256"] = json.loads((weights / "blockwise_paper.json").read_text())["sha256"]
    card.write_text(json.dumps(doc))
    changed = _deltas_in_a_fresh_process(engine_cache, weights)
    assert changed["torch"] and changed["info"]["file"] != first["info"]["file"]


def test_reuse_leaves_a_possible_gpu_and_other_backends_to_torch(engine_cache, monkeypatch):
    from streamguard.backends import reuse as reuse_mod
    from streamguard.models.weights import weights_dir
    from streamguard.protect.adversarial import cells_engine, cells_spec

    # onnxruntime asked for by name: "auto" picks by timing, which a loaded machine can tip
    cells_engine("blockwise_identity", "onnxruntime", "cpu")  # builds and remembers
    weights = weights_dir() / "blockwise_identity.safetensors"
    spec = cells_spec("cpu")
    ort = "onnxruntime"
    assert reuse_mod.reuse("blockwise_identity", weights, spec, ort, "auto") is not None
    monkeypatch.setattr(reuse_mod, "gpu_possible", lambda: True)
    assert reuse_mod.reuse("blockwise_identity", weights, spec, ort, "auto") is None
    assert reuse_mod.reuse("blockwise_identity", weights, spec, ort, "cpu") is not None
    assert reuse_mod.reuse("blockwise_identity", weights, spec, "torch", "cpu") is None
    # remembered per backend asked for: what "auto" picks is its own record
    assert reuse_mod.reuse("blockwise_identity", weights, spec, "auto", "cpu") is None
