"""One generic registry for steps, runtimes, metrics and suites.

Adding a component is one new module plus a decorator: modules inside the registry's package
are discovered by walking it (cheap, because component modules keep heavy imports inside
functions), and third-party packages can add modules through the entry-point group
``fastvlm_harness.plugins``.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """A suggestion suffix such as " — did you mean 'quantize'?" (empty when nothing is close)."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" (known: {', '.join(sorted(choices))})" if choices else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """Name → object map filled by a decorator, with lazy package discovery."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = False

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = description or (getattr(obj, "__doc__", "") or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, obj, text)
            return obj

        return decorate

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{self.package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)
        _load_plugins()

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}")
        return self._entries[name].obj

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._discover()
        yield from (self._entries[n] for n in sorted(self._entries))

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries


_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="fastvlm_harness.plugins"):
        ep.load()
