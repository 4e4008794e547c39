"""An engine reused without torch: the default mode's generator, running a fraction of a
second after start.

`load_engine` builds with torch (the export, the `auto` timing), and `import torch` alone
cost ~1.3 s of every start (and ~300 MB), even when the engine it picked is an ONNX file
already in engines/. After a build, `remember` writes down what was picked for a shipped
weights file: the weights' sha256, the input spec, the backend asked for, the file and the
library versions it was built with. `reuse` opens that file with onnxruntime directly when
all of it still holds (the weights file unchanged, the same spec and backend asked for, the
same torch and onnxruntime installed, the file there) and the engine is for the CPU: a device
"auto" counts as the CPU only on a machine without NVIDIA device nodes, where torch cannot
see a GPU either. Anything else returns None, and the caller builds with torch as before.
Only onnxruntime engines are reused this way: the other backends are torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamguard.assets import sha256_file
from streamguard.backends.base import Engine, EngineSpec, engines_dir

log = logging.getLogger(__name__)

REUSE_DIR = "reuse"  # under engines/: one record per (weights name, backend asked)


def gpu_possible() -> bool:
    """Whether torch could see a GPU here (NVIDIA device nodes, or WSL's GPU device)."""
    dev = Path("/dev")
    return any(dev.glob("nvidia*")) or (dev / "dxg").exists()


def _record_path(name: str, backend: str, cache: Path) -> Path:
    return cache / REUSE_DIR / f"{name}-{backend}.json"


def _spec_json(spec: EngineSpec) -> str:
    return json.dumps(asdict(spec), sort_keys=True, default=str)


def remember(engine: Engine, name: str, weights: Path, spec: EngineSpec, backend: str,
             cache: Path | None = None) -> None:
    """Write down the engine `load_engine` built for `weights` (when it can be reused)."""
    cache = cache or engines_dir()
    path = _record_path(name, backend, cache)
    if engine.backend != "onnxruntime" or spec.device != "cpu" or "file" not in engine.info:
        path.unlink(missing_ok=True)  # what was picked now cannot run without torch
        return
    record = {"weights_sha256": sha256_file(weights), "spec": _spec_json(spec),
              "backend": backend, "file": engine.info["file"],
              "versions": engine.info.get("versions", {}),
              "auto_timings_ms": engine.info.get("auto_timings_ms")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def reuse(name: str, weights: Path, spec: EngineSpec, backend: str, device: str,
          cache: Path | None = None) -> Engine | None:
    """The remembered onnxruntime engine for `weights`, opened without torch, or None."""
    if backend not in ("auto", "onnxruntime") or device not in ("auto", "cpu"):
        return None
    if device == "auto" and gpu_possible():
        return None  # torch decides whether "auto" is the GPU
    cache = cache or engines_dir()
    try:
        record: dict[str, Any] = json.loads(_record_path(name, backend, cache).read_text())
        from streamguard.backends.onnxruntime import numpy_runner, open_session, versions

        if (record["weights_sha256"] != sha256_file(weights)
                or record["spec"] != _spec_json(spec) or record["versions"] != versions()):
            return None
        file = cache / record["file"]
        sess = open_session(file)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a stale record or file: build with torch
        log.info("engine %s: not reused (%s: %s); building it", name, type(exc).__name__, exc)
        return None
    info = {"name": name, "backend": "onnxruntime", "file": file.name, "device": "cpu",
            "precision": spec.precision, "inputs": list(spec.input_names),
            "versions": record["versions"], "reused": True, "without_torch": True}
    if record.get("auto_timings_ms"):
        info["auto_timings_ms"] = record["auto_timings_ms"]
    return Engine(None, "onnxruntime", info, numpy_fn=numpy_runner(sess, spec.input_names))
