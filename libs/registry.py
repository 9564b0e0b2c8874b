"""Name-keyed registries of replaceable parts.

Each kind of part (detectors, trackers, post-processors, loggers, periodic tasks) owns one
:class:`Registry`.  A module registers its class with ``@REGISTRY.register("name")``; the
registry imports every module of its package on first use, so adding a backend is adding one
module.  A module whose import fails (an optional backend without its library) is remembered
with its error and reported when someone asks for it; it never stops the others.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """Asked for a name no module registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._failed: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = item
            return item

        return decorator

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name.startswith("_"):
                continue
            full = f"{self.package}.{mod.name}"
            try:
                importlib.import_module(full)
            except Exception as exc:
                self._failed[mod.name] = f"{type(exc).__name__}: {exc}"
                log.info("%s module %s unavailable: %s", self.kind, full, exc)

    def get(self, name: str) -> T:
        self.discover()
        if name in self._items:
            return self._items[name]
        known = ", ".join(sorted(self._items)) or "none"
        msg = f"unknown {self.kind} {name!r}; available: {known}"
        if self._failed:
            failed = "; ".join(f"{m} ({e})" for m, e in sorted(self._failed.items()))
            msg += f"; modules that failed to import: {failed}"
        raise UnknownPluginError(msg)

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def unavailable(self) -> dict[str, str]:
        self.discover()
        return dict(self._failed)
