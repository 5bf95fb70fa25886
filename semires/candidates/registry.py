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
from semires.registry import Registry

GENERATORS: Registry[Callable[[CandidatesConfig], CandidateGenerator]] = Registry(
    "candidate generator", "candidates.generator")


def register_generator(name: str):
    """Decorator registering ``fn(cfg: CandidatesConfig) -> CandidateGenerator`` under ``name``."""
    return GENERATORS.register(name)


def available_generators() -> list[str]:
    """Registered generator names, sorted."""
    return sorted(GENERATORS.names())


def build_generator(cfg: CandidatesConfig) -> CandidateGenerator:
    """The generator that ``cfg.generator`` names, built from its section of ``cfg``; an unknown name is a
    one-line :class:`~semires.errors.SemiresError` naming the known ones."""
    return GENERATORS.get(cfg.generator)(cfg)


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
