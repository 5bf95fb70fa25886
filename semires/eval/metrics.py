"""Referring-segmentation metrics with the standard definitions (as in LAVT / CRIS).

Per expression i with prediction P_i and ground truth G_i (bool masks):
  I_i = |P_i and G_i|, U_i = |P_i or G_i|, IoU_i = I_i / U_i.
- mIoU: mean over expressions of IoU_i.
- oIoU (overall IoU): sum_i I_i / sum_i U_i, so large objects weigh more.
- Prec@X: share of expressions with IoU_i >= X, X in 0.5 ... 0.9.
When both P_i and G_i are empty, U_i = 0: we count IoU_i = 1 (predicting nothing for nothing is
right; RefCOCO never has empty truth, but generalised RES data may).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample intersection and union pixel counts.

    Args:
        pred, target: bool (or {0,1}) masks of shape (B, H, W) or (H, W).
    Returns:
        (I, U): int64 arrays of shape (B,).
    """
    p = torch.as_tensor(pred).bool()
    t = torch.as_tensor(target).bool()
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} != target shape {tuple(t.shape)}")
    if p.dim() == 2:
        p, t = p[None], t[None]
    inter = (p & t).flatten(1).sum(1)
    union = (p | t).flatten(1).sum(1)
    return inter.cpu().numpy().astype(np.int64), union.cpu().numpy().astype(np.int64)


def iou_from_counts(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per-sample IoU in [0, 1]; 1.0 where the union is empty."""
    inter, union = np.asarray(inter, np.float64), np.asarray(union, np.float64)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


@dataclass
class RESMeter:
    """Accumulates per-expression intersections and unions; :meth:`compute` gives the metrics."""

    thresholds: tuple[float, ...] = PREC_THRESHOLDS
    inter: list[np.ndarray] = field(default_factory=list)
    union: list[np.ndarray] = field(default_factory=list)

    def update(self, pred, target) -> np.ndarray:
        """Add a batch of (B, H, W) bool predictions and targets; returns their IoUs (B,)."""
        i, u = intersection_union(pred, target)
        self.inter.append(i)
        self.union.append(u)
        return iou_from_counts(i, u)

    @property
    def count(self) -> int:
        return int(sum(len(x) for x in self.inter))

    def compute(self) -> dict[str, float]:
        """Metrics in percent (0-100): ``mIoU``, ``oIoU``, ``prec@0.5`` ... and ``n``."""
        return res_metrics_from_counts(
            np.concatenate(self.inter) if self.inter else np.zeros(0, np.int64),
            np.concatenate(self.union) if self.union else np.zeros(0, np.int64), self.thresholds)


def res_metrics_from_counts(inter: np.ndarray, union: np.ndarray,
                            thresholds: tuple[float, ...] = PREC_THRESHOLDS) -> dict[str, float]:
    """mIoU, oIoU and Prec@X in percent from per-expression counts (see module docstring)."""
    n = len(inter)
    if n == 0:
        return {"n": 0, "mIoU": float("nan"), "oIoU": float("nan"), **{f"prec@{t}": float("nan") for t in thresholds}}
    ious = iou_from_counts(inter, union)
    total_u = float(np.sum(union))
    out = {"n": n, "mIoU": 100.0 * float(ious.mean()),
           "oIoU": 100.0 * (float(np.sum(inter)) / total_u if total_u > 0 else 1.0)}
    for t in thresholds:
        out[f"prec@{t}"] = 100.0 * float((ious >= t).mean())
    return out


def res_metrics(preds, targets, thresholds: tuple[float, ...] = PREC_THRESHOLDS) -> dict[str, float]:
    """Metrics for a whole set of (N, H, W) bool predictions and targets (percent)."""
    i, u = intersection_union(preds, targets)
    return res_metrics_from_counts(i, u, thresholds)
