"""The paper's networks: the IDN and baseline attackers, the adversarial generators, their
layers, losses and shipped weights. `create_model(name, **args)` builds a registered model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamguard.models.registry import KIND, MODELS, register_model


if TYPE_CHECKING:
    import torch.nn as nn


def _load_builtin() -> None:
    from streamguard.models import attackers, generators, idn, multiframe  # noqa: F401


def list_models(kind: str | None = None) -> list[str]:
    _load_builtin()
    return [n for n in MODELS.names() if kind is None or KIND[n] == kind]


def model_kind(name: str) -> str:
    _load_builtin()
    MODELS.lookup(name)
    return KIND[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """A registered model; `model.model_args` records how to build it again."""
    _load_builtin()
    model = MODELS.lookup(name)(**kwargs)
    model.model_args = {"name": name, **kwargs}
    return model


__all__ = ["create_model", "list_models", "model_kind", "register_model"]
