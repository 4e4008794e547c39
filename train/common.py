"""What both training scripts share: config (TOML section + --set overrides), checkpoints,
seeding, device choice and logging. Kept small so the scripts themselves read top to bottom."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

# the same cache the Makefile and the CLI use, when run from a checkout
os.environ.setdefault("STREAMGUARD_CACHE",
                      str(Path(__file__).resolve().parents[1] / ".cache" / "streamguard"))


def parse_config(defaults: dict[str, Any], section: str, argv: list[str] | None = None) -> dict:
    """defaults <- [section] of --config TOML <- --set key=value (unknown keys rejected)."""
    ap = argparse.ArgumentParser(description=f"train: {section}")
    ap.add_argument("--config", help="TOML file; keys are read from its [%s] table" % section)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    cfg = dict(defaults)
    if args.config:
        data = tomllib.loads(Path(args.config).read_text()).get(section, {})
        _merge(cfg, data, f"{args.config} [{section}]")
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            sys.exit(f"--set expects key=value, got '{item}'")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        _merge(cfg, {key.strip(): value}, "--set")
    return cfg


def _merge(cfg: dict, data: dict, origin: str) -> None:
    for key, value in data.items():
        if key not in cfg:
            sys.exit(f"{origin}: unknown key '{key}'; known: {', '.join(sorted(cfg))}")
        cfg[key] = value


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
    opt.load_state_dict(ckpt["optimizer"])
    print(f"resumed from {path} at step {ckpt['step']}")
    return ckpt["step"], ckpt.get("wall_s", 0.0)
