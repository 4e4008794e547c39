"""The engine layer's parts: `EngineSpec`, `Engine`, the backend registry, the cache (keys,
sidecars, listing, clearing) and device resolution. `streamguard.backends.load_engine` puts
them together:

    engine = load_engine(module, name="blockwise_identity", spec=EngineSpec(...), backend="auto")
    out = engine(cells)          # torch tensors in, a torch tensor out
    out = engine.numpy(cells)    # numpy arrays in, a numpy array out

torch is imported only where a module is built or timed: an engine reused without torch
(`backends/reuse.py`) runs with none.

Backends register by name (`@register_backend`); only `backends/tensorrt.py` imports
torch_tensorrt. Built artifacts are cached in `engines/` (or $STREAMGUARD_ENGINES) under a
name that hashes the weights, the input spec, the precision, the library versions and the
device, with a JSON sidecar describing the build; an entry that fails to load is rebuilt with
the reason logged. `backend="auto"` times every available backend on the example inputs and
keeps the fastest, logging each timing and each backend it skipped and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamguard.errors import EngineError
from streamguard.registry import Registry

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_REPO_ENGINES = Path(__file__).resolve().parents[2] / "engines"


def engines_dir() -> Path:
    env = os.environ.get("STREAMGUARD_ENGINES")
    return Path(env) if env else _REPO_ENGINES


@dataclass(frozen=True)
class EngineSpec:
    """Inputs of the module: names, example shapes, and the dims that vary.

    dynamic: {input name: {dim index: (min, opt, max)}} — batch and grid sizes, for example.
    """

    input_names: tuple[str, ...]
    example_shapes: tuple[tuple[int, ...], ...]
    dynamic: dict[str, dict[int, tuple[int, int, int]]] = field(default_factory=dict)
    precision: str = "fp32"  # fp32 | fp16 (fp16 only on CUDA)
    device: str = "cpu"

    def examples(self) -> list[torch.Tensor]:
        import torch

        g = torch.Generator().manual_seed(0)
        return [torch.rand(s, generator=g).to(self.device) for s in self.example_shapes]


class Engine:
    """A built model: `engine(*tensors)` takes and gives torch tensors, `engine.numpy(*arrays)`
    float32 numpy arrays (moved to the engine's device and back). `info` says what was built
    and how. A backend gives `fn` (torch), `numpy_fn` (numpy) or both; the other is made from
    it."""

    def __init__(self, fn: Callable[..., torch.Tensor] | None, backend: str,
                 info: dict[str, Any], numpy_fn: Callable[..., np.ndarray] | None = None):
        if fn is None and numpy_fn is None:
            raise ValueError("an engine needs a torch or a numpy function")
        self._fn = fn
        self._numpy_fn = numpy_fn
        self.backend = backend
        self.info = info

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._fn is None:
            import torch

            arrays = (np.ascontiguousarray(x.detach().cpu().numpy(), np.float32) for x in inputs)
            return torch.from_numpy(self._numpy_fn(*arrays))
        return self._fn(*inputs)

    def numpy(self, *arrays: np.ndarray) -> np.ndarray:
        if self._numpy_fn is not None:
            return self._numpy_fn(*(np.ascontiguousarray(a, np.float32) for a in arrays))
        import torch

        device = self.info.get("device", "cpu")
        out = self._fn(*(torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)
                         for a in arrays))
        return out.float().cpu().numpy()


# A backend builder: (module, name, spec, cache_dir) -> Engine; raises EngineError when it
# cannot run here (missing library, no GPU, ...), with the reason.
Builder = Callable[["torch.nn.Module", str, EngineSpec, Path], Engine]
BACKENDS: Registry[Builder] = Registry("backend")
register_backend = BACKENDS.register


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda" without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineError("protect.device = \"cuda\" but torch sees no CUDA device here; use "
                          "\"auto\" or \"cpu\"")
    return name


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over the module's state (its parameters and buffers, by name)."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(module: torch.nn.Module, name: str, backend: str, spec: EngineSpec,
              versions: dict[str, str]) -> str:
    import torch

    device_name = (torch.cuda.get_device_name() if spec.device.startswith("cuda")
                   and torch.cuda.is_available() else "cpu")
    payload = json.dumps({"name": name, "backend": backend, "weights": weights_digest(module),
                          "spec": asdict(spec), "versions": versions, "device": device_name},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def write_sidecar(path: Path, info: dict[str, Any]) -> None:
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(info, indent=2, default=str))


def median_ms(engine: Engine, inputs: list[torch.Tensor], runs: int = 15) -> float:
    import torch

    for _ in range(3):
        engine(*inputs)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        engine(*inputs)
        if inputs and inputs[0].is_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times)[len(times) // 2]


def list_cache(cache: Path | None = None) -> list[dict[str, Any]]:
    cache = cache or engines_dir()
    out = []
    for side in sorted(cache.glob("*.json")):
        try:
            out.append(json.loads(side.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            out.append({"file": side.name, "error": str(exc)})
    return out


def clear_cache(cache: Path | None = None) -> int:
    cache = cache or engines_dir()
    n = 0
    for p in cache.iterdir() if cache.is_dir() else []:
        if p.name != "README.md" and p.is_file():
            p.unlink()
            n += 1
    for p in (cache / "reuse").glob("*.json"):  # records of engines reused without torch
        p.unlink()
        n += 1
    return n
