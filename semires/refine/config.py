"""Typed configuration of SAM-guided pseudo-label refinement (``params.yaml`` section ``refine``).

Read with ``semires.config.section(params, "refine", RefineConfig)``. Defaults are the published
SemiRES settings: IOM threshold 0.5, CPI thresholds 0.7 / 0.7, PWA weight
``w(p) = 1.3 - N(p; mean 0.5, variance 0.1)``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from semires.config import Section


class RefineConfig(Section):
    """How teacher pseudo-masks are matched to SAM candidates and weighted.

    strategy:
      - ``"none"``: no matching (plain mean teacher); every sample counts as unmatched.
      - ``"iom"``: IoU-based Optimal Matching, the best-IoU candidate replaces the pseudo-mask.
      - ``"cpi"``: Composite Parts Integration, the union of the covering / contained candidates.
      - ``"soft_iom"`` (not in SemiRES): the candidate of highest soft IoU with the teacher's probabilities.
    pwa: unmatched samples keep the pseudo-mask with Pixel-Wise Adjustment weights; without it
      they keep it with weight 1 everywhere.
    """

    # the choices are the names in semires.refine.strategies (a test keeps the two equal)
    strategy: Literal["none", "iom", "cpi", "soft_iom"] = Field(
        "iom", description="registered strategy: 'none' (mean teacher), 'iom', 'cpi' or 'soft_iom' (not in SemiRES)")
    pwa: bool = Field(True, description="Pixel-Wise Adjustment weights for samples nothing matched")
    iom_iou_thresh: float = Field(0.5, ge=0, le=1, description="IOM matches when the best IoU is > this")
    cpi_cover_thresh: float = Field(
        0.7, ge=0, le=1, description="CPI takes a candidate M when |M and P| / |P| > this (M covers P)")
    cpi_inside_thresh: float = Field(
        0.7, ge=0, le=1, description="CPI takes a candidate M when |M and P| / |M| > this (M lies inside P)")
    soft_iou_thresh: float = Field(0.0, ge=0, le=1, description="soft_iom matches when the best soft IoU is > this "
                                   "(0: every sample with a candidate)")
    pwa_offset: float = Field(1.3, description="PWA weight w(p) = pwa_offset - N(p; pwa_mu, pwa_var)")
    pwa_mu: float = Field(0.5, description="PWA Gaussian mean, on the teacher's foreground probability")
    pwa_var: float = Field(0.1, gt=0, description="PWA Gaussian variance (not the standard deviation)")

    def pwa_min_weight(self) -> float:
        """The smallest PWA weight, at p = pwa_mu: ``pwa_offset - 1 / sqrt(2 pi pwa_var)``."""
        return self.pwa_offset - 1.0 / math.sqrt(2 * math.pi * self.pwa_var)

    @property
    def name(self) -> str:
        """Short variant name for run names and tables: ``mt``, ``iom``, ``cpi+pwa`` ..."""
        base = "mt" if self.strategy == "none" else self.strategy
        return f"{base}+pwa" if self.pwa else base
