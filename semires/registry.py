"""Named extension points: a :class:`Registry` maps names (``params.yaml`` values) to entries.

Candidate generators (:mod:`semires.candidates.registry`) and refinement strategies
(:mod:`semires.refine.strategies`) are registries: a name not registered is a one-line
:class:`~semires.errors.SemiresError` naming the known ones, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from semires.errors import SemiresError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order.

    Args:
        kind: what an entry is, for messages ("candidate generator").
        setting: the params key that names one ("candidates.generator"), for the fix in messages.
    """

    def __init__(self, kind: str, setting: str):
        self.kind, self.setting = kind, setting
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registers once (ValueError otherwise)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def remove(self, name: str) -> None:
        """Drop ``name`` (tests register throw-away entries)."""
        del self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def get(self, name: str) -> T:
        """The entry ``name``; an unknown name is a one-line :class:`SemiresError` naming the known ones."""
        if name not in self._entries:
            raise SemiresError(f"unknown {self.kind} '{name}'", None,
                               f"set {self.setting} to one of {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries
