"""The straightforward per-candidate loop: the readable definition of IOM / CPI / PWA.

It is the oracle that tests compare the vectorised :func:`semires.refine.strategies.refine` with, and
the baseline of ``benchmarks/refine_speed_bench.py``. Same inputs, same outputs, same edge
cases; counts are Python ints and ratios Python floats (IEEE float64, correctly rounded).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semires.refine.config import RefineConfig
from semires.refine.core import RefineResult, pwa_weight


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


def refine_loop(pseudo: torch.Tensor, prob: torch.Tensor, stacks: Sequence[torch.Tensor],
                cfg: RefineConfig | None = None) -> RefineResult:
    """Loop version of :func:`semires.refine.strategies.refine`; ``stacks[b]`` is (K_b, H, W) bool."""
    cfg = cfg or RefineConfig()
    labels, weights, matched, scores, parts = [], [], [], [], []
    for b in range(pseudo.shape[0]):
        p = pseudo[b]
        p_area = int(p.sum())
        best_iou, best_k = 0.0, -1
        taken = []
        for k in range(stacks[b].shape[0] if cfg.strategy != "none" else 0):
            m = stacks[b][k]
            inter, union, m_area = int((m & p).sum()), int((m | p).sum()), int(m.sum())
            iou = _ratio(inter, union)
            if best_k < 0 or iou > best_iou:
                best_iou, best_k = iou, k
            if _ratio(inter, p_area) > cfg.cpi_cover_thresh or _ratio(inter, m_area) > cfg.cpi_inside_thresh:
                taken.append(k)
        label, ok, score, n_parts = p.clone(), False, best_iou, 0
        if cfg.strategy == "iom" and best_k >= 0 and best_iou > cfg.iom_iou_thresh:
            label, ok, n_parts = stacks[b][best_k].clone(), True, 1
        elif cfg.strategy == "cpi" and taken:
            label = torch.zeros_like(p)
            for k in taken:
                label |= stacks[b][k]
            ok, n_parts = True, len(taken)
            score = _ratio(int((label & p).sum()), int((label | p).sum()))
        w = torch.ones(p.shape, dtype=torch.float32, device=p.device)
        if cfg.pwa and not ok:
            w = pwa_weight(prob[b], cfg.pwa_offset, cfg.pwa_mu, cfg.pwa_var)
        labels.append(label)
        weights.append(w)
        matched.append(ok)
        scores.append(score)
        parts.append(n_parts)
    dev = pseudo.device
    return RefineResult(label=torch.stack(labels) if labels else pseudo.clone(),
                        weight=torch.stack(weights) if weights else torch.ones(pseudo.shape, device=dev),
                        matched=torch.tensor(matched, dtype=torch.bool, device=dev),
                        score=torch.tensor(scores, dtype=torch.float64, device=dev),
                        parts=torch.tensor(parts, dtype=torch.int64, device=dev), strategy=cfg.strategy)
