"""Refinement strategies by name, and :func:`refine`, which applies the one ``RefineConfig.strategy`` names.

A strategy turns a batch of pseudo-masks and their candidates into a :class:`~semires.refine.core.Match`
(refined label, matched flags, score, parts); PWA weights for the unmatched samples are added by
:func:`refine` whatever the strategy. Adding a strategy is one entry here plus its config (its
thresholds as fields of :class:`~semires.refine.config.RefineConfig` and its name in the
``strategy`` choices there)::

    @register_strategy("best_cover", description="the candidate of highest cover")
    def _best_cover(pseudo, cands, cfg):
        return best_cover(pseudo, cands, cfg.best_cover_thresh)

``tests/refine/test_strategies.py`` checks that the config's choices (and the Airflow DAG's
``strategy`` parameter) name exactly the registered strategies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from semires.refine.config import RefineConfig
from semires.refine.core import Candidates, Match, RefineResult, cpi, iom, pwa_weight, soft_iom
from semires.registry import Registry

Matcher = Callable[[torch.Tensor, "Candidates | None", RefineConfig, torch.Tensor], Match]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy.

    Attributes:
        name: the ``refine.strategy`` value.
        match: ``match(pseudo (B, H, W) bool, cands or None, cfg, prob (B, H, W) float) -> Match``.
        needs_candidates: False only where ``match`` ignores the candidates (then stages open no store).
        description: one line for help texts.
    """

    name: str
    match: Matcher
    needs_candidates: bool
    description: str


STRATEGIES: Registry[Strategy] = Registry("refinement strategy", "refine.strategy")


def register_strategy(name: str, needs_candidates: bool = True, description: str = ""):
    """Decorator registering ``match(pseudo, cands, cfg, prob) -> Match`` as strategy ``name``."""

    def deco(fn: Matcher) -> Matcher:
        STRATEGIES.add(name, Strategy(name, fn, needs_candidates, description))
        return fn

    return deco


def available_strategies() -> list[str]:
    """Registered strategy names, in registration order (``none``, ``iom``, ``cpi``, ``soft_iom``)."""
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    """The strategy ``name``; an unknown name is a one-line :class:`~semires.errors.SemiresError` naming the
    known ones."""
    return STRATEGIES.get(name)


def needs_candidates(name: str) -> bool:
    """True when strategy ``name`` reads SAM candidates (every registered one but ``none``)."""
    return get_strategy(name).needs_candidates


@register_strategy("none", needs_candidates=False, description="no matching (plain mean teacher)")
def _none(pseudo: torch.Tensor, cands: Candidates | None, cfg: RefineConfig, prob: torch.Tensor) -> Match:
    b, dev = pseudo.shape[0], pseudo.device
    return Match(label=pseudo.clone(), matched=torch.zeros(b, dtype=torch.bool, device=dev),
                 score=torch.zeros(b, dtype=torch.float64, device=dev), parts=torch.zeros(b, dtype=torch.int64,
                                                                                          device=dev))


@register_strategy("iom", description="IoU-based Optimal Matching: the best-IoU candidate")
def _iom(pseudo: torch.Tensor, cands: Candidates, cfg: RefineConfig, prob: torch.Tensor) -> Match:
    return iom(pseudo, cands, cfg.iom_iou_thresh)


@register_strategy("cpi", description="Composite Parts Integration: the union of covering / contained candidates")
def _cpi(pseudo: torch.Tensor, cands: Candidates, cfg: RefineConfig, prob: torch.Tensor) -> Match:
    return cpi(pseudo, cands, cfg.cpi_cover_thresh, cfg.cpi_inside_thresh)


@register_strategy("soft_iom", description="the candidate of highest soft IoU with the teacher's probabilities "
                   "(not in SemiRES)")
def _soft_iom(pseudo: torch.Tensor, cands: Candidates, cfg: RefineConfig, prob: torch.Tensor) -> Match:
    return soft_iom(prob, pseudo, cands, cfg.soft_iou_thresh)


def refine(pseudo: torch.Tensor, prob: torch.Tensor, cands: Candidates | None,
           cfg: RefineConfig | None = None) -> RefineResult:
    """Refine a batch of pseudo-masks with the strategy and PWA setting of ``cfg``.

    Args:
        pseudo: (B, H, W) bool teacher pseudo-masks.
        prob: (B, H, W) float teacher foreground probabilities in [0, 1].
        cands: candidates at (H, W) (:class:`~semires.refine.packing.CandidateBatch` or
            :class:`~semires.refine.atoms.AtomBatch`); may be None for a strategy that needs none.
        cfg: strategy, PWA and thresholds; None = the published defaults (:class:`RefineConfig`).
    Returns:
        :class:`RefineResult`: label (B, H, W) bool, weight (B, H, W) float32 (1 where matched,
        PWA where unmatched and ``cfg.pwa``, else 1), matched (B,) bool, score (B,) float64, parts (B,).
    Raises:
        SemiresError: unknown strategy. ValueError: shapes disagree, or candidates missing.
    """
    cfg = cfg or RefineConfig()
    strategy = get_strategy(cfg.strategy)
    if prob.shape != pseudo.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and pseudo {tuple(pseudo.shape)} differ in shape")
    if cands is None and strategy.needs_candidates:
        raise ValueError(f"strategy {cfg.strategy!r} needs candidates")
    m = strategy.match(pseudo, cands, cfg, prob)
    weight = torch.empty(pseudo.shape, dtype=torch.float32, device=pseudo.device)
    pwa = (~m.matched).tolist() if cfg.pwa else [False] * pseudo.shape[0]
    for i, adjust in enumerate(pwa):  # per sample, written in place: no (B, H, W) temporaries
        if adjust:
            pwa_weight(prob[i], cfg.pwa_offset, cfg.pwa_mu, cfg.pwa_var, out=weight[i])
        else:
            weight[i].fill_(1.0)
    return RefineResult(label=m.label, matched=m.matched, score=m.score, parts=m.parts, weight=weight,
                        strategy=cfg.strategy)
