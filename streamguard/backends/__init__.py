"""Inference backends behind one interface: see base.py."""

from streamguard.backends.base import (
    Engine, EngineSpec, available_backends, clear_cache, list_cache, load_engine,
)

__all__ = ["Engine", "EngineSpec", "available_backends", "clear_cache", "list_cache",
           "load_engine"]
