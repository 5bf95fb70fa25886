"""SAM-guided pseudo-label refinement (SemiRES): IOM, CPI and PWA as batched tensor functions."""

from semires.refine.atoms import AtomBatch, AtomCandidates, pack_for_device
from semires.refine.config import RefineConfig
from semires.refine.core import Match, PairStats, RefineResult, cpi, iom, pair_stats, pwa_weight, refine
from semires.refine.packing import CandidateBatch, CandidateSource, gather_candidates

__all__ = ["AtomBatch", "AtomCandidates", "CandidateBatch", "CandidateSource", "Match", "PairStats", "RefineConfig",
           "RefineResult", "cpi", "gather_candidates", "iom", "pack_for_device", "pair_stats", "pwa_weight", "refine"]
