"""Inference backends behind one interface (see base.py): `load_engine` builds or reuses an
engine for a module with the backend asked for, or with the fastest one here ("auto")."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from streamguard.backends.base import (
    BACKENDS, Engine, EngineSpec, clear_cache, engines_dir, list_cache, median_ms,
    register_backend, resolve_device,
)
from streamguard.errors import EngineError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _load_builtin() -> None:
    from streamguard.backends import onnxruntime, tensorrt, torch_backend  # noqa: F401


def available_backends() -> list[str]:
    _load_builtin()
    return BACKENDS.names()


def load_engine(module: torch.nn.Module, name: str, spec: EngineSpec, backend: str = "auto",
                cache: Path | None = None) -> Engine:
    """Build or reuse an engine for `module`. Raises EngineError with the reason."""
    _load_builtin()
    module = module.eval().to(spec.device)
    cache = cache or engines_dir()
    if backend != "auto":
        return BACKENDS.lookup(backend)(module, name, spec, cache)
    return _auto(module, name, spec, cache)


ONNX_PREFERENCE = 0.25  # onnxruntime on the CPU wins unless another is > 25 % faster


def _auto(module: torch.nn.Module, name: str, spec: EngineSpec, cache: Path) -> Engine:
    examples = spec.examples()
    timings: dict[str, float] = {}
    engines: dict[str, Engine] = {}
    for backend in available_backends():
        if backend == "compile":
            continue  # minutes of compile time for a few percent: only when asked by name
        try:
            engine = BACKENDS.lookup(backend)(module, name, spec, cache)
            timings[backend] = median_ms(engine, examples)
            engines[backend] = engine
        except EngineError as exc:
            log.info("engine %s: backend %s unavailable: %s", name, backend, exc)
    if not engines:
        raise EngineError(f"no backend can run {name} on {spec.device}")
    # an onnxruntime engine on the CPU starts later runs without importing torch (~1.3 s of
    # every start, backends.reuse): it is kept unless another is clearly faster, not by a
    # timing's noise (0.76 vs 0.90 ms for the default generator flipped from run to run)
    best = min(timings, key=lambda b: timings[b] * (1 - ONNX_PREFERENCE * (
        b == "onnxruntime" and spec.device == "cpu")))
    log.info("engine %s: chose %s (%s)", name, best,
             ", ".join(f"{b} {t:.2f} ms" for b, t in sorted(timings.items(), key=lambda x: x[1])))
    chosen = engines[best]
    chosen.info["auto_timings_ms"] = timings
    return chosen


__all__ = ["Engine", "EngineSpec", "available_backends", "clear_cache", "list_cache",
           "load_engine", "register_backend", "resolve_device"]
