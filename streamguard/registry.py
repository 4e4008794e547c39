"""One registry shape for every swappable part (detectors, protection modes, backends,
models): register by name, duplicate names are an error, look up by name. Names come from the
config, so both mistakes are `ConfigError`s naming the known entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from streamguard.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (e.g. "detector")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def wrap(item: T) -> T:
            if name in self._items:
                raise ConfigError(f"{self.kind} '{name}' is already registered")
            self._items[name] = item
            return item

        return wrap

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def lookup(self, name: str) -> T:
        """The entry called `name`; a ConfigError naming the known ones when there is none."""
        item = self._items.get(name)
        if item is None:
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")
        return item

    def names(self) -> list[str]:
        return sorted(self._items)
