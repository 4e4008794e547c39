"""What both training scripts share: config (TOML section + --set overrides), checkpoints,
seeding, device choice and logging. Kept small so the scripts themselves read top to bottom."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import tomllib
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import ConfigDict, ValidationError, create_model

from streamguard.config import format_validation_error, parse_value
from streamguard.errors import ConfigError

# the same cache the Makefile and the CLI use, when run from a checkout
os.environ.setdefault("STREAMGUARD_CACHE",
                      str(Path(__file__).resolve().parents[1] / ".cache" / "streamguard"))


def parse_config(defaults: dict[str, Any], section: str, argv: list[str] | None = None) -> dict:
    """defaults <- [section] of --config TOML <- --set key=value, validated by the same pydantic
    machinery as streamguard's config: unknown keys and wrongly typed values are ConfigErrors
    naming the key. Each key's type is its default's."""
    ap = argparse.ArgumentParser(description=f"train: {section}")
    ap.add_argument("--config", help="TOML file; keys are read from its [%s] table" % section)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    data: dict[str, Any] = {}
    origin = "defaults"
    if args.config:
        try:
            data = tomllib.loads(Path(args.config).read_text()).get(section, {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{args.config}: cannot read ({exc})") from None
        origin = f"{args.config} [{section}]"
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{item}'")
        data[key.strip()] = parse_value(raw.strip())
        origin = f"{origin} + --set"
    fields = {k: (_type_of(v), v) for k, v in defaults.items()}
    model = create_model(f"{section}_config", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None


def _type_of(default: Any) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, float):
        return float
    if isinstance(default, int):
        return int
    if isinstance(default, dict):
        return dict[str, Any]
    return type(default)


def run_script(main: Callable[[], Any]) -> None:
    """A training script's entry point: a bad config is one line and exit 2, not a traceback."""
    try:
        main()
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_checkpoint(path: Path, **payload: Any) -> None:
    """Atomic write; the payload must hold only tensors and plain values (weights_only-safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)


class Logger:
    """Progress lines on stdout and one JSON record per log step in out_dir/metrics.jsonl."""

    def __init__(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.t0 = time.time()

    def log(self, step: int, **values: float) -> None:
        rec = {"step": step, "time_s": round(time.time() - self.t0, 1), **values}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in rec.items())
        print(text, flush=True)


def train_loader(cfg: dict, gen: torch.Generator):
    """The training split of cfg["data"], its loader and the total step count."""
    from torch.utils.data import DataLoader

    from train.datasets import open_dataset

    data = open_dataset(cfg["data"], "train", cfg["size"], augment=True, seed=cfg["seed"])
    loader = DataLoader(data, batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                        num_workers=cfg["workers"], generator=gen)
    steps_per_epoch = max(len(loader), 1)
    total = cfg["max_steps"] or int(np.ceil(cfg["epochs"] * steps_per_epoch))
    return data, loader, steps_per_epoch, total


def resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
           device: torch.device) -> tuple[int, float]:
    """Load model and optimizer state from `path` if it exists: (step, wall seconds so far)."""
    if not path.exists():
        return 0, 0.0
    ckpt = load_checkpoint(path, device)
    model.load_state_dict(ckpt["model"])
    if "optimizer" in ckpt:
        opt.load_state_dict(ckpt["optimizer"])
    else:  # a checkpoint shipped back from another machine without it: fresh moments
        print(f"{path} has no optimizer state: Adam starts afresh")
    print(f"resumed from {path} at step {ckpt['step']}")
    return ckpt["step"], ckpt.get("wall_s", 0.0)
