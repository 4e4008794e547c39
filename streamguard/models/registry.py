"""A timm-style model registry: `@register_model` factories; `streamguard.models` builds them
(`create_model(name, **args)`).

Every model records `model_args` (its registry name and constructor arguments), so checkpoints
describe themselves and `create_model(**ckpt["model_args"])` rebuilds the exact architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from streamguard.errors import ConfigError
from streamguard.registry import Registry

if TYPE_CHECKING:
    import torch.nn as nn

MODELS: Registry[Callable[..., "nn.Module"]] = Registry("model")
KIND: dict[str, str] = {}  # name -> "attacker" | "generator"


def register_model(name: str, kind: str):
    if kind not in ("attacker", "generator"):
        raise ConfigError(f"model kind must be 'attacker' or 'generator', got '{kind}'")

    def wrap(factory: Callable[..., nn.Module]):
        MODELS.register(name)(factory)
        KIND[name] = kind
        return factory

    return wrap
