"""SAM-guided pseudo-label refinement (SemiRES): IOM, CPI and PWA as batched tensor functions.

* :mod:`~semires.refine.config` - ``RefineConfig`` (params section ``refine``)
* :mod:`~semires.refine.core` - IOM, CPI, PWA and the per-candidate overlap statistics
* :mod:`~semires.refine.strategies` - strategies by name (``none``, ``iom``, ``cpi``) and ``refine``
* :mod:`~semires.refine.packing` / :mod:`~semires.refine.atoms` - a batch's candidates, dense or as atoms
* :mod:`~semires.refine.gather` - a batch's candidates read from a ``CandidateSource`` and packed
"""

from semires.refine.atoms import AtomBatch, AtomCandidates, pack_for_device
from semires.refine.config import RefineConfig
from semires.refine.core import Match, PairStats, RefineResult, cpi, iom, pair_stats, pwa_weight
from semires.refine.gather import gather_candidates
from semires.refine.packing import CandidateBatch, CandidateSource
from semires.refine.strategies import (
    Strategy,
    available_strategies,
    get_strategy,
    needs_candidates,
    refine,
    register_strategy,
)

__all__ = ["AtomBatch", "AtomCandidates", "CandidateBatch", "CandidateSource", "Match", "PairStats", "RefineConfig",
           "RefineResult", "Strategy", "available_strategies", "cpi", "gather_candidates", "get_strategy", "iom",
           "needs_candidates", "pack_for_device", "pair_stats", "pwa_weight", "refine", "register_strategy"]
