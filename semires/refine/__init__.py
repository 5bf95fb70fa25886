"""SAM-guided pseudo-label refinement (SemiRES): IOM, CPI and PWA as batched tensor functions."""

from semires.refine.config import RefineConfig
from semires.refine.core import Match, PairStats, RefineResult, cpi, iom, pair_stats, pwa_weight, refine
from semires.refine.packing import CandidateBatch, CandidateSource, gather_candidates

__all__ = ["CandidateBatch", "CandidateSource", "Match", "PairStats", "RefineConfig", "RefineResult", "cpi",
           "gather_candidates", "iom", "pair_stats", "pwa_weight", "refine"]
