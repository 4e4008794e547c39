"""onnxruntime backend: the module is exported to ONNX once per (weights, spec, versions,
device) and cached in engines/; CPU execution provider (CUDA's when present and asked)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from streamguard.backends.base import Engine, EngineSpec, cache_key, register_backend, write_sidecar
from streamguard.errors import EngineError

log = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    import onnxruntime as ort

    return {"torch": torch.__version__, "onnxruntime": ort.__version__}


def export_onnx(module: torch.nn.Module, spec: EngineSpec, path: Path) -> None:
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
        import onnxruntime as ort
    except ImportError:
        raise EngineError("onnxruntime is not installed") from None
    if spec.precision != "fp32":
        raise EngineError(f"onnxruntime engines here are fp32 (asked {spec.precision})")
    providers = ["CPUExecutionProvider"]
    if spec.device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError("onnxruntime has no CUDA execution provider here")
        providers.insert(0, "CUDAExecutionProvider")
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(module, name, "onnxruntime", spec, _versions())
    path = cache / f"{name}-onnxruntime-{key}.onnx"
    info = {"name": name, "backend": "onnxruntime", "file": path.name, "device": spec.device,
            "precision": spec.precision, "inputs": list(spec.input_names),
            "dynamic": spec.dynamic, "versions": _versions(), "reused": path.exists()}
    # One thread that does not spin: streamguard's engines run small batches (a frame's faces)
    # between other stages; onnxruntime's default pool (a thread per core, spinning after
    # every run) took CPU from detection and the encoder on a 2-core machine
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = None
    if path.exists():
        try:
            sess = ort.InferenceSession(str(path), options, providers=providers)
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
        sess = ort.InferenceSession(str(path), options, providers=providers)
        write_sidecar(path, info)
    names = [i.name for i in sess.get_inputs()]

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        feed = {n: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
                for n, x in zip(spec.input_names, inputs) if n in names}
        return torch.from_numpy(sess.run(None, feed)[0])

    return Engine(run, "onnxruntime", info)
