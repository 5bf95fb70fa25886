"""Prediction overlays: image, expression, true and predicted mask, as captioned PNG grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semires.viz import PALETTE, overlay, save_grid

GT_COLOR, PRED_COLOR = PALETTE[0], PALETTE[1]  # green truth, red prediction


@dataclass
class PredictionSample:
    """One expression's prediction at the image's original resolution.

    image: (H, W, 3) uint8; pred, truth: (H, W) bool; iou in [0, 1].
    """

    image: np.ndarray
    pred: np.ndarray
    truth: np.ndarray
    sentence: str
    iou: float
    ref_id: int = -1
    sent_id: int = -1


def sample_panels(s: PredictionSample) -> list[tuple[np.ndarray, str]]:
    """Three captioned panels: the image with the expression, the truth (green), the prediction (red)."""
    return [(s.image, f'"{s.sentence}"'),
            (overlay(s.image, [s.truth], colors=GT_COLOR[None]), f"truth (ref {s.ref_id})"),
            (overlay(s.image, [s.pred], colors=PRED_COLOR[None]), f"prediction, IoU {100 * s.iou:.1f}")]


def save_overlays(samples: Sequence[PredictionSample], path: str | Path, title: str | None = None) -> Path:
    """Write one PNG grid, one row (image | truth | prediction) per sample, atomically."""
    panels = [p for s in samples for p in sample_panels(s)]
    return save_grid(panels, path, ncols=3, title=title)


def pick_indices(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (deterministic; all when k >= n)."""
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
