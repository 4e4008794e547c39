"""A timm-style model registry: `@register_model` factories, `create_model(name, **args)`.

Every model records `model_args` (its registry name and constructor arguments), so checkpoints
describe themselves and `create_model(**ckpt["model_args"])` rebuilds the exact architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from streamguard.registry import Registry

_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_KIND: dict[str, str] = {}  # name -> "attacker" | "generator"


def register_model(name: str, kind: str):
    if kind not in ("attacker", "generator"):
        raise ValueError(f"model kind must be 'attacker' or 'generator', got '{kind}'")

    def wrap(factory: Callable[..., nn.Module]):
        _MODELS.register(name)(factory)
        _KIND[name] = kind
        return factory

    return wrap


def list_models(kind: str | None = None) -> list[str]:
    _load_builtin()
    return [n for n in _MODELS.names() if kind is None or _KIND[n] == kind]


def model_kind(name: str) -> str:
    _load_builtin()
    return _KIND[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    _load_builtin()
    factory = _MODELS.get(name)
    if factory is None:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(list_models())}")
    model = factory(**kwargs)
    model.model_args = {"name": name, **kwargs}
    return model


def _load_builtin() -> None:
    from streamguard.models import attackers, generators, idn  # noqa: F401
