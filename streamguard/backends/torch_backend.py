"""PyTorch backends: `torch` (eager; CPU channels_last + inference_mode; CUDA fp16/bf16) and
`compile` (torch.compile, dynamic shapes). No CUDA graph is captured (shapes vary per frame);
benchmarks/gpu.py measures what one would bring. Nothing is written to
the engine cache: the artifact is the module itself (torch.compile keeps its own cache)."""

from __future__ import annotations

import torch

from streamguard.backends.base import Engine, EngineSpec, register_backend
from streamguard.errors import EngineError


def _dtype(spec: EngineSpec) -> torch.dtype:
    if spec.precision == "fp32":
        return torch.float32
    if not spec.device.startswith("cuda"):
        raise EngineError(f"precision {spec.precision} needs a CUDA device (got {spec.device})")
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[spec.precision]


@register_backend("torch")
def build_torch(module: torch.nn.Module, name: str, spec: EngineSpec, cache) -> Engine:
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("no CUDA device")
    dtype = _dtype(spec)
    channels_last = spec.device == "cpu" and all(len(s) == 4 for s in spec.example_shapes)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            xs = [x.to(spec.device, dtype) for x in inputs]
            if channels_last:
                xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
            if dtype != torch.float32:
                with torch.autocast("cuda", dtype=dtype):
                    return module(*xs).float()
            return module(*xs).contiguous()

    return Engine(run, "torch", {"name": name, "backend": "torch", "device": spec.device,
                                 "precision": spec.precision, "channels_last": channels_last})


@register_backend("compile")
def build_compile(module: torch.nn.Module, name: str, spec: EngineSpec, cache) -> Engine:
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError("no CUDA device")
    try:
        compiled = torch.compile(module, dynamic=True)
    except Exception as exc:  # torch.compile raises many types; the reason is what matters
        raise EngineError(f"torch.compile failed: {type(exc).__name__}: {exc}") from None

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(*[x.to(spec.device) for x in inputs])

    return Engine(run, "compile", {"name": name, "backend": "compile", "device": spec.device})
