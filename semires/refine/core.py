"""SAM-guided refinement of teacher pseudo-masks: IOM, CPI and PWA, vectorised over a batch.

The building blocks; :func:`semires.refine.strategies.refine` applies the strategy a config names.

Inputs for a batch of B samples:
  - ``pseudo``: (B, H, W) bool teacher pseudo-masks P (the thresholded foreground probability),
  - ``prob``: (B, H, W) float teacher foreground probabilities in [0, 1],
  - ``cands``: K_b >= 0 candidates per sample, either dense (:class:`~semires.refine.packing.CandidateBatch`,
    a flat (N, H, W) stack) or as atoms (:class:`~semires.refine.atoms.AtomBatch`, built once per
    image and much faster on CPU for real candidate sets); both give identical results.

Per candidate M of sample b: ``IoU = |M and P| / |M or P|``, ``cover = |M and P| / |P|``,
``inside = |M and P| / |M|``, each 0 where its denominator is 0. Ratios are float64 divisions of
exact integer counts, so results are identical on CPU and CUDA and equal to a per-candidate
loop in Python floats (:mod:`semires.refine.reference`). Comparisons are strict.

- **IOM**: sample b matches when its highest candidate IoU is > ``iom_iou_thresh``; the refined
  label is that candidate alone. Ties go to the candidate that comes first in ``cands`` (the
  higher-scored one when stacks are ordered by score).
- **CPI**: sample b matches when some candidate has ``cover > cpi_cover_thresh`` or
  ``inside > cpi_inside_thresh``; the refined label is the union of all such candidates. Note
  that a large candidate containing P has cover 1 and is taken, as the published rule says.
- **PWA**: an unmatched sample keeps P as its label, weighted per pixel by
  ``w(p) = pwa_offset - exp(-(p - pwa_mu)^2 / (2 pwa_var)) / sqrt(2 pi pwa_var)``
  (about 0.04 at p = 0.5 and 0.94 at p = 0 or 1 with the defaults). Matched samples have weight 1.

Edge cases: an empty P has IoU 0 and cover 0 with every candidate and inside 0 too, so it never
matches and keeps its (empty) label; a sample without candidates never matches; an empty
candidate never matches (IoU 0, inside 0, and cover 0 unless P is empty too, where it is 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from semires.refine.atoms import AtomBatch
from semires.refine.counts import pixel_counts, safe_ratio
from semires.refine.packing import CandidateBatch

Candidates = CandidateBatch | AtomBatch  # both give overlap(pseudo) and union(selected); results are identical


@dataclass(frozen=True)
class PairStats:
    """Per-candidate overlap with its sample's pseudo-mask: all (N,) float64 in [0, 1], plus counts."""

    iou: torch.Tensor
    cover: torch.Tensor
    inside: torch.Tensor
    inter: torch.Tensor
    area: torch.Tensor
    pseudo_area: torch.Tensor  # (B,) int64


@dataclass(frozen=True)
class Match:
    """Outcome of one matching strategy for B samples.

    Attributes:
        label: (B, H, W) bool, the refined mask where matched, else the pseudo-mask.
        matched: (B,) bool.
        score: (B,) float64 in [0, 1]: IoU of the refined label with P where matched; where not,
            the highest single-candidate IoU (which did not pass), 0 without candidates.
        parts: (B,) int64 number of candidates in the refined label (0 where unmatched).
    """

    label: torch.Tensor
    matched: torch.Tensor
    score: torch.Tensor
    parts: torch.Tensor


@dataclass(frozen=True)
class RefineResult:
    """Refined training targets of B samples.

    Attributes:
        label, matched, score, parts: as in :class:`Match`.
        weight: (B, H, W) float32 per-pixel loss weights (> 0 for the default PWA constants).
        strategy: the strategy that produced them.
    """

    label: torch.Tensor
    weight: torch.Tensor
    matched: torch.Tensor
    score: torch.Tensor
    parts: torch.Tensor
    strategy: str


def pair_stats(pseudo: torch.Tensor, cands: Candidates) -> PairStats:
    """IoU, cover and inside of every candidate against its sample's pseudo-mask (see module doc)."""
    _check(pseudo, cands)
    inter, area, parea = cands.overlap(pseudo)
    pa = parea[cands.owner]
    return PairStats(iou=safe_ratio(inter, area + pa - inter), cover=safe_ratio(inter, pa),
                     inside=safe_ratio(inter, area), inter=inter, area=area, pseudo_area=parea)


def _segment_best(values: torch.Tensor, owner: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample max of ``values`` (N,) and the first row attaining it: ((B,) float64, (B,) int64; -1 if none)."""
    n = values.shape[0]
    best = torch.full((b,), -math.inf, dtype=values.dtype, device=values.device)
    best = best.scatter_reduce(0, owner, values, reduce="amax", include_self=True)
    rows = torch.arange(n, device=values.device)
    is_best = values == best[owner]
    first = torch.full((b,), n, dtype=torch.int64, device=values.device)
    first = first.scatter_reduce(0, owner[is_best], rows[is_best], reduce="amin", include_self=True)
    best = torch.where(first < n, best, torch.zeros_like(best))
    first = torch.where(first < n, first, torch.full_like(first, -1))
    return best, first


def _fill_unmatched(union: torch.Tensor, pseudo: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """``union`` (a fresh tensor, modified in place) with the pseudo-mask copied into unmatched samples."""
    unmatched = ~matched
    if bool(unmatched.any()):
        union[unmatched] = pseudo[unmatched]
    return union


def iom(pseudo: torch.Tensor, cands: Candidates, iou_thresh: float = 0.5,
        stats: PairStats | None = None) -> Match:
    """IoU-based Optimal Matching: the best-IoU candidate where its IoU is > ``iou_thresh``.

    Args:
        pseudo: (B, H, W) bool.
        cands: candidates of the same B samples at the same (H, W): a dense
            :class:`~semires.refine.packing.CandidateBatch` or an :class:`~semires.refine.atoms.AtomBatch`.
    """
    stats = pair_stats(pseudo, cands) if stats is None else stats
    b = pseudo.shape[0]
    best, first = _segment_best(stats.iou, cands.owner, b)
    matched = (first >= 0) & (best > iou_thresh)
    chosen = torch.zeros(cands.owner.shape[0], dtype=torch.bool, device=pseudo.device)
    chosen[first[matched]] = True
    label = _fill_unmatched(cands.union(chosen), pseudo, matched)
    return Match(label=label, matched=matched, score=best, parts=matched.long())


def cpi(pseudo: torch.Tensor, cands: Candidates, cover_thresh: float = 0.7, inside_thresh: float = 0.7,
        stats: PairStats | None = None) -> Match:
    """Composite Parts Integration: the union of candidates with cover > ``cover_thresh`` or
    inside > ``inside_thresh``; shapes as in :func:`iom`."""
    stats = pair_stats(pseudo, cands) if stats is None else stats
    b = pseudo.shape[0]
    take = (stats.cover > cover_thresh) | (stats.inside > inside_thresh)
    parts = torch.bincount(cands.owner[take], minlength=b)
    matched = parts > 0
    label = _fill_unmatched(cands.union(take), pseudo, matched)
    best, _ = _segment_best(stats.iou, cands.owner, b)
    inter, uarea, parea = pixel_counts(label, torch.arange(b, device=pseudo.device), pseudo)
    union_iou = safe_ratio(inter, uarea + parea - inter)
    return Match(label=label, matched=matched, score=torch.where(matched, union_iou, best), parts=parts)


def soft_iom(prob: torch.Tensor, pseudo: torch.Tensor, cands: Candidates, thresh: float = 0.0) -> Match:
    """Soft IoU matching (not in SemiRES): the candidate of highest soft IoU with the teacher's
    probability map, ``sum_M p / (sum p + |M| - sum_M p)``, where that is > ``thresh``.

    The hard IoU of IOM compares a candidate with the thresholded mask, so a teacher that is right
    about the object but unsure (a fragmented or half-size mask) matches nothing; the soft IoU
    still ranks the object's candidate first. Shapes as in :func:`iom`; ``prob`` (B, H, W) float.
    """
    _check(pseudo, cands)
    b = pseudo.shape[0]
    inter, area, total = cands.soft_overlap(prob)
    soft = inter / (total[cands.owner] + area.double() - inter).clamp_min(1e-12)
    best, first = _segment_best(soft, cands.owner, b)
    matched = (first >= 0) & (best > thresh)
    chosen = torch.zeros(cands.owner.shape[0], dtype=torch.bool, device=pseudo.device)
    chosen[first[matched]] = True
    label = _fill_unmatched(cands.union(chosen), pseudo, matched)
    return Match(label=label, matched=matched, score=best, parts=matched.long())


def pwa_weight(prob: torch.Tensor, offset: float = 1.3, mu: float = 0.5, var: float = 0.1,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-Wise Adjustment weights ``offset - N(prob; mu, var)``, same shape as ``prob``, float32.

    ``var`` is a variance. float32 throughout: CPU and CUDA (and vectorised vs scalar ``exp``
    kernels) agree to about 1e-7, not always to the last bit. With the defaults: w(0.5) ~ 0.038, w(0) = w(1) ~ 0.94.
    ``out`` (float32, ``prob``'s shape) receives the weights; computed in place there, so a batch's
    weight map is filled with no temporary (refinement is bound by memory traffic on the CPU).
    """
    if var <= 0:
        raise ValueError(f"pwa variance must be > 0, got {var}")
    if not bool(torch.isfinite(prob).all()):  # a NaN weight would poison the loss without a word
        from semires.errors import NonFiniteError

        raise NonFiniteError(f"{int((~torch.isfinite(prob)).sum())} of {prob.numel()} probabilities given to PWA "
                             "are NaN or infinite", None, "the teacher diverged: lower the learning rate or "
                             "resume from the last good checkpoint")
    w = torch.empty(prob.shape, dtype=torch.float32, device=prob.device) if out is None else out
    w.copy_(prob)
    # offset - exp(-(p - mu)^2 / 2var) / sqrt(2 pi var), in place; bit-equal to that expression
    return w.sub_(mu).square_().mul_(-1.0 / (2 * var)).exp_().mul_(-1.0 / math.sqrt(2 * math.pi * var)).add_(offset)


def _check(pseudo: torch.Tensor, cands: Candidates) -> None:
    if pseudo.dim() != 3 or pseudo.dtype != torch.bool:
        raise ValueError(f"pseudo must be (B, H, W) bool, got {tuple(pseudo.shape)} {pseudo.dtype}")
    if cands.batch_size != pseudo.shape[0]:
        raise ValueError(f"{cands.batch_size} candidate stacks for {pseudo.shape[0]} pseudo-masks")
    if cands.size != tuple(pseudo.shape[1:]):
        raise ValueError(f"candidates are {cands.size} but pseudo-masks are {tuple(pseudo.shape[1:])}; "
                         "resize the candidates to the prediction size")
    if cands.device != pseudo.device:
        raise ValueError(f"candidates on {cands.device}, pseudo-masks on {pseudo.device}")
