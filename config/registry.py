"""A registry of pluggable classes, each found by a stable key.

Task types (`tasks_catalog`) and integration providers (`integrations`) are registries: the
built-ins are registered explicitly in their app's `AppConfig.ready()`, and a lookup of an
unknown key raises the registry's named error.
"""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownKey(LookupError):
    """Raised for a key that no registered class has."""


class Registry(Generic[T]):
    """Map stable keys to instances of registered classes."""

    def __init__(self, kind: str, error: type[UnknownKey] = UnknownKey) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def register(self, item: T) -> T:
        """Add `item` under its `key`; raise ValueError if the key is taken."""
        key = item.key  # type: ignore[attr-defined]
        if key in self._items and self._items[key] is not item:
            raise ValueError(f"{self.kind} {key!r} is already registered")
        self._items[key] = item
        return item

    def get(self, key: str) -> T:
        """Return the item registered as `key`; raise the registry's error if there is none."""
        try:
            return self._items[key]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._items))
            raise self.error(f"unknown {self.kind} {key!r} (known: {known})") from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(sorted(self._items.values(), key=lambda item: item.key))  # type: ignore[attr-defined]
