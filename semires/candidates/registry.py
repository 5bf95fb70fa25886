"""Candidate generators by name: :func:`build_generator` turns a ``CandidatesConfig`` into a generator.

Each entry builds its generator from its own section of the config (``candidates.sam``,
``candidates.embedded``). Generator modules are imported only when their entry is built, so
reading the registry costs no torch or segment-anything import. Adding a generator (SAM 2, say)
is one entry here plus its config: a section model in :mod:`semires.candidates.config`, a field of
that name on ``CandidatesConfig`` and the name in its ``generator`` choices::

    @register_generator("sam2")
    def _sam2(cfg: CandidatesConfig) -> CandidateGenerator:
        from semires.candidates.sam2 import Sam2Generator

        return Sam2Generator(cfg.sam2)

``tests/candidates/test_registry.py`` checks that the config's choices and the registry agree.
"""

from __future__ import annotations

from collections.abc import Callable

from semires.candidates.base import CandidateGenerator
from semires.candidates.config import CandidatesConfig
from semires.errors import SemiresError

_REGISTRY: dict[str, Callable[[CandidatesConfig], CandidateGenerator]] = {}


def register_generator(name: str):
    """Decorator registering ``fn(cfg: CandidatesConfig) -> CandidateGenerator`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"candidate generator '{name}' registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def available_generators() -> list[str]:
    """Registered generator names, sorted."""
    return sorted(_REGISTRY)


def check_generator(name: str) -> str:
    """``name`` if a generator is registered under it; else a one-line :class:`SemiresError` naming the known ones."""
    if name not in _REGISTRY:
        raise SemiresError(f"unknown candidate generator '{name}'", None,
                           f"set candidates.generator to one of {', '.join(available_generators())}")
    return name


def build_generator(cfg: CandidatesConfig) -> CandidateGenerator:
    """The generator that ``cfg.generator`` names, built from its section of ``cfg``."""
    return _REGISTRY[check_generator(cfg.generator)](cfg)


@register_generator("embedded")
def _embedded(cfg: CandidatesConfig) -> CandidateGenerator:
    """The weight-free stand-in for SAM (:mod:`semires.candidates.embedded`), settings ``candidates.embedded``."""
    from semires.candidates.embedded import EmbeddedGenerator

    return EmbeddedGenerator(cfg.embedded)


@register_generator("sam")
def _sam(cfg: CandidatesConfig) -> CandidateGenerator:
    """Segment Anything's automatic masks (:mod:`semires.candidates.sam`), settings ``candidates.sam``."""
    from semires.candidates.sam import SamGenerator

    return SamGenerator(cfg.sam)
