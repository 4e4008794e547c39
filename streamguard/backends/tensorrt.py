"""TensorRT through torch-tensorrt's dynamo path (optional extra `streamguard[tensorrt]`).

The only module that imports torch_tensorrt. Builds with `torch_tensorrt.Input` min/opt/max
shapes and fp16, saves the result as an ExportedProgram in engines/ and reloads it with
torch.export.load on later runs. TensorRT cannot be installed on the project's dev and CI
machines, so this path is exercised only where it exists (tests skip with the reason).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from streamguard.backends.base import Engine, EngineSpec, cache_key, register_backend, write_sidecar
from streamguard.errors import EngineError

log = logging.getLogger(__name__)


def _import_trt():
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise EngineError(f"torch_tensorrt is not installed ({exc}); pip install "
                          "'streamguard[tensorrt]' on an NVIDIA machine") from None
    return torch_tensorrt


@register_backend("tensorrt")
def build_tensorrt(module: torch.nn.Module, name: str, spec: EngineSpec, cache: Path) -> Engine:
    if not spec.device.startswith("cuda") or not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA device")
    trt = _import_trt()
    versions = {"torch": torch.__version__, "torch_tensorrt": trt.__version__}
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(module, name, "tensorrt", spec, versions)
    path = cache / f"{name}-tensorrt-{key}.ep"
    info = {"name": name, "backend": "tensorrt", "file": path.name, "precision": spec.precision,
            "device": torch.cuda.get_device_name(), "versions": versions,
            "reused": path.exists()}
    program = None
    if path.exists():
        try:
            program = torch.export.load(str(path)).module()
        except Exception as exc:  # stale engine (driver/TensorRT change): rebuild
            log.warning("engine %s: cached %s does not load (%s); rebuilding", name, path.name,
                        exc)
            info["rebuilt_because"] = str(exc)
            path.unlink()
    if program is None:
        inputs = []
        for n, shape in zip(spec.input_names, spec.example_shapes):
            dims = spec.dynamic.get(n, {})
            lo = [dims.get(i, (s, s, s))[0] for i, s in enumerate(shape)]
            opt = [dims.get(i, (s, s, s))[1] for i, s in enumerate(shape)]
            hi = [dims.get(i, (s, s, s))[2] for i, s in enumerate(shape)]
            inputs.append(trt.Input(min_shape=lo, opt_shape=opt, max_shape=hi,
                                    dtype=torch.float32))
        precisions = {torch.float16} if spec.precision == "fp16" else {torch.float32}
        examples = spec.examples()
        program = trt.compile(module, ir="dynamo", inputs=inputs,
                              enabled_precisions=precisions)
        trt.save(program, str(path), arg_inputs=examples)
        write_sidecar(path, info)

    def run(*xs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return program(*[x.to(spec.device) for x in xs])

    return Engine(run, "tensorrt", info)
