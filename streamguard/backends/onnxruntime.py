"""onnxruntime backend: the module is exported to ONNX once per (weights, spec, versions,
device) and cached in engines/; CPU execution provider (CUDA's when present and asked)."""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamguard.backends.base import Engine, EngineSpec, cache_key, register_backend, write_sidecar
from streamguard.errors import EngineError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """The libraries an exported file depends on (torch's read from its package metadata:
    the same string as torch.__version__, without importing torch)."""
    import onnxruntime as ort

    return {"torch": version("torch"), "onnxruntime": ort.__version__}


def open_session(path: Path, device: str = "cpu") -> Any:
    """An onnxruntime session on `path`: the CPU provider (CUDA's first for a cuda device).

    One thread that does not spin: streamguard's engines run small batches (a frame's faces)
    between other stages; onnxruntime's default pool (a thread per core, spinning after every
    run) took CPU from detection and the encoder on a 2-core machine."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError("onnxruntime has no CUDA execution provider here")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=providers)


def numpy_runner(sess: Any, input_names: tuple[str, ...]):
    """float32 arrays in (the spec's inputs, those the graph kept), the first output out."""
    names = {i.name for i in sess.get_inputs()}

    def run(*inputs: np.ndarray) -> np.ndarray:
        return sess.run(None, {n: x for n, x in zip(input_names, inputs) if n in names})[0]

    return run


def export_onnx(module: torch.nn.Module, spec: EngineSpec, path: Path) -> None:
    import torch

    dynamic_axes = {n: {d: f"{n}_{d}" for d in dims} for n, dims in spec.dynamic.items()}
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(module.cpu(), tuple(x.cpu() for x in spec.examples()), str(tmp),
                          input_names=list(spec.input_names), output_names=["output"],
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    tmp.replace(path)


@register_backend("onnxruntime")
def build_onnxruntime(module: torch.nn.Module, name: str, spec: EngineSpec,
                      cache: Path) -> Engine:
    try:
        import onnxruntime  # noqa: F401 - installed?
    except ImportError:
        raise EngineError("onnxruntime is not installed") from None
    if spec.precision != "fp32":
        raise EngineError(f"onnxruntime engines here are fp32 (asked {spec.precision})")
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(module, name, "onnxruntime", spec, versions())
    path = cache / f"{name}-onnxruntime-{key}.onnx"
    info = {"name": name, "backend": "onnxruntime", "file": path.name, "device": spec.device,
            "precision": spec.precision, "inputs": list(spec.input_names),
            "dynamic": spec.dynamic, "versions": versions(), "reused": path.exists()}
    sess = None
    if path.exists():
        try:
            sess = open_session(path, spec.device)
        except EngineError:
            raise
        except Exception as exc:  # a stale or damaged file: rebuild it, say why
            log.warning("engine %s: cached %s does not load (%s); rebuilding", name, path.name,
                        exc)
            info["reused"] = False
            info["rebuilt_because"] = str(exc)
            path.unlink()
    if sess is None:
        try:
            export_onnx(module, spec, path)
        except Exception as exc:  # export failures come in many types
            raise EngineError(f"ONNX export of {name} failed: {type(exc).__name__}: {exc}") from None
        sess = open_session(path, spec.device)
        write_sidecar(path, info)
    return Engine(None, "onnxruntime", info, numpy_fn=numpy_runner(sess, spec.input_names))
