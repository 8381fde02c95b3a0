"""A small name -> factory registry (the timm pattern), used for models, datasets and trainer hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from accord.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; ``kind`` is used in error messages ("model", "dataset").

    ``builtins``, when given, registers the built-in entries: it is called once, on the first look-up (``get``,
    ``names``, ``in``, iteration), so a package can register modules that are expensive to import (torch) only when
    a name is actually looked up. :meth:`registered` lists what is registered so far without calling it.
    """

    def __init__(self, kind: str, builtins: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._builtins = builtins

    def _load_builtins(self) -> None:
        """Register the built-in entries (once; a failed import is retried on the next look-up)."""
        load, self._builtins = self._builtins, None
        if load is not None:
            try:
                load()
            except BaseException:
                self._builtins = load
                raise

    def add_builtins(self, load: Callable[[], None]) -> None:
        """Have ``load`` register built-in entries on the first look-up (after any given before): for a registry
        whose built-ins live on a floor above its own (the trainer hooks of :mod:`accord.balance`)."""
        before = self._builtins
        if before is None:
            self._builtins = load
            return

        def both() -> None:
            before()
            load()

        self._builtins = both

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (and any aliases); a duplicate name is an error."""

        def deco(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._items and self._items[key] is not obj:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
                self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the factory for ``name`` or raise a ConfigError listing the known names."""
        self._load_builtins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Every registered name (aliases included), sorted."""
        self._load_builtins()
        return sorted(self._items)

    def registered(self) -> list[str]:
        """The names registered so far, sorted, WITHOUT registering the built-ins (imports nothing)."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
