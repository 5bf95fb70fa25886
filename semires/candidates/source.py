"""Opening the candidate store a refinement reads: the one opener of the command line and the components."""

from __future__ import annotations

from pathlib import Path

from semires.candidates.store import CandidateStore
from semires.errors import SemiresError


def open_candidates(path: str | Path | None, needed: bool, cache_mb: float = 1024.0) -> CandidateStore | None:
    """The candidate store at ``path`` when the stage ``needed`` it, else None (nothing is opened).

    ``needed`` is True where the refinement strategy reads candidates
    (``semires.refine.needs_candidates(strategy)``, and in online mode for student training). The store
    keeps at most ``cache_mb`` MiB of decoded stacks (``semi.candidate_cache_mb`` for the student).
    Raises :class:`SemiresError` when candidates are needed and ``path`` is None.
    """
    if not needed:
        return None
    if path is None:
        raise SemiresError("this refinement strategy needs SAM candidates", None,
                           "pass --candidates (the candidates stage output), or set refine.strategy: none")
    return CandidateStore(path, cache_mb=cache_mb)
