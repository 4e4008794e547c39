"""Trained weights shipped inside the package: fp16 safetensors, each with a JSON card.

`load_shipped(name)` checks the file's SHA-256 against its card, rebuilds the registered
architecture from the card's `model_args` and loads the tensors (safetensors: no pickle).
A missing or corrupt file raises ModelUnavailableError: callers never fall back silently.
`ship(checkpoint, name, card)` (used by train/ship.py) writes both files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamguard.assets import sha256_file
from streamguard.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch

PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def weights_dir() -> Path:
    """The shipped weights, or $STREAMGUARD_WEIGHTS (a folder laid out the same way)."""
    env = os.environ.get("STREAMGUARD_WEIGHTS")
    return Path(env) if env else PACKAGE_WEIGHTS


def card(name: str, folder: Path | None = None) -> dict:
    folder = folder or weights_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise ModelUnavailableError(
            f"no shipped weights named '{name}' ({path} is missing); this build lacks them")
    return json.loads(path.read_text())


def available(folder: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (folder or weights_dir()).glob("*.json"))


def load_shipped(name: str, folder: Path | None = None) -> torch.nn.Module:
    from safetensors.torch import load_file

    from streamguard.models import create_model

    folder = folder or weights_dir()
    info = card(name, folder)
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing (its card {name}.json is present)")
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise ModelUnavailableError(
            f"{path} is corrupt: sha256 {digest[:12]}... does not match its card "
            f"({info['sha256'][:12]}...)")
    args = dict(info["model_args"])
    model = create_model(args.pop("name"), **args)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"{path} does not fit {info['model_args']}: {exc}") from None
    return model.eval()


def ship(state: dict[str, torch.Tensor], model_args: dict, name: str, info: dict[str, Any],
         folder: Path | None = None) -> Path:
    """Write fp16 safetensors plus the card; returns the weights path."""
    from safetensors.torch import save_file

    folder = folder or PACKAGE_WEIGHTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, str(path))
    info = {**info, "model_args": model_args, "format": "safetensors fp16",
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size}
    (folder / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    return path
