"""OpenVINO backend (the `openvino` package): the module exported to ONNX as for onnxruntime
(the same file in engines/), compiled by OpenVINO's CPU plugin.

On CPUs that compute bfloat16 natively (AMX: Sapphire Rapids and later) OpenVINO runs at
bfloat16: the cell network on a frame's 7 face grids took 0.54 ms against onnxruntime's
2.5 ms. An engine asked for fp32 gets it only when its outputs on the spec's examples stay
within `TOLERANCE` of float32's (half a grey level for a δ in [0, 1] units): the δ is
rounded to whole grey levels when it is painted, so such a difference cannot show. Otherwise,
and on other CPUs, it runs at float32. `info["precision"]` says which, `info["max_error"]`
what the check measured.

One inference thread, not pinned to a core, as for onnxruntime: the codec and the detector
share the cores.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamguard.backends.base import Engine, EngineSpec, cache_key, register_backend, write_sidecar
from streamguard.backends.onnxruntime import export_onnx
from streamguard.errors import EngineError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

TOLERANCE = 0.5 / 255  # largest output difference from float32 that bfloat16 may make
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def versions() -> dict[str, str]:
    """The libraries an engine file depends on (read from package metadata: no import)."""
    try:
        return {"torch": version("torch"), "openvino": version("openvino")}
    except PackageNotFoundError:
        raise EngineError("openvino is not installed (pip install 'streamguard[openvino]')"
                          ) from None


def open_compiled(path: Path, precision: str) -> Any:
    """`path` (ONNX) compiled for the CPU at `precision` ("fp32" or "bf16")."""
    import openvino

    return openvino.Core().compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": PRECISIONS[precision], "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False, "PERFORMANCE_HINT": "LATENCY"})


def numpy_runner(compiled: Any, input_names: tuple[str, ...]):
    """float32 arrays in (the spec's inputs, those the graph kept), the first output out (a
    copy: the request's buffer is reused by the next call). One caller at a time."""
    request = compiled.create_infer_request()
    names = {n for port in compiled.inputs for n in port.get_names()}

    def run(*inputs: np.ndarray) -> np.ndarray:
        request.infer({n: x for n, x in zip(input_names, inputs) if n in names})
        return request.get_output_tensor(0).data.copy()

    return run


def _native_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _pick_precision(path: Path, spec: EngineSpec) -> tuple[str, float]:
    """bf16 where the CPU computes it and it stays within TOLERANCE of fp32 on the spec's
    examples; fp32 otherwise. (precision, the largest difference measured)."""
    if spec.precision != "fp32" or not _native_bf16():
        return "fp32", 0.0
    examples = [x.cpu().numpy() for x in spec.examples()]
    exact = numpy_runner(open_compiled(path, "fp32"), spec.input_names)(*examples)
    fast = numpy_runner(open_compiled(path, "bf16"), spec.input_names)(*examples)
    error = float(np.abs(exact - fast).max())
    return ("bf16" if error <= TOLERANCE else "fp32"), error


@register_backend("openvino")
def build_openvino(module: torch.nn.Module, name: str, spec: EngineSpec, cache: Path) -> Engine:
    if not spec.device == "cpu":
        raise EngineError(f"the openvino backend runs on the CPU (asked {spec.device})")
    if spec.precision != "fp32":
        raise EngineError(f"openvino engines are asked for fp32 (got {spec.precision})")
    libs = versions()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(module, name, "openvino", spec, libs)
    path = cache / f"{name}-openvino-{key}.onnx"
    reused = path.exists()
    try:
        if not reused:
            export_onnx(module, spec, path)
        precision, error = _pick_precision(path, spec)
        compiled = open_compiled(path, precision)
    except EngineError:
        raise
    except Exception as exc:  # export and compile failures come in many types
        path.unlink(missing_ok=True)
        raise EngineError(f"OpenVINO build of {name} failed: {type(exc).__name__}: {exc}"
                          ) from None
    info = {"name": name, "backend": "openvino", "file": path.name, "device": "cpu",
            "precision": precision, "max_error": error, "inputs": list(spec.input_names),
            "dynamic": spec.dynamic, "versions": libs, "reused": reused}
    if not reused:
        write_sidecar(path, info)
    log.info("engine %s: openvino at %s (largest difference from fp32 %.2g)", name,
             precision, error)
    return Engine(None, "openvino", info, numpy_fn=numpy_runner(compiled, spec.input_names))
