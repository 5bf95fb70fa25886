"""Run statistics of candidate generation (for MLflow) and a picture of candidates over images.

Statistics are plain JSON-safe dicts: candidates per image, candidate area as a fraction of the
image (histogram), and generation time per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Histogram edges of candidate area / image area (log-spaced: small parts to whole-image masks).
AREA_BINS = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
COUNT_BINS = [0, 1, 5, 10, 20, 50, 100, 200, 500, 10_000]


def shard_stats(counts: Sequence[int], area_fracs: Sequence[float], seconds: Sequence[float]) -> dict:
    """Raw per-shard numbers kept for merging: per-image counts and times, area histogram counts."""
    return {"counts": [int(c) for c in counts], "seconds": [round(float(s), 6) for s in seconds],
            "area_hist": np.histogram(np.asarray(area_fracs, float), bins=AREA_BINS)[0].tolist()}


def merge_stats(parts: Sequence[dict]) -> dict:
    """Summary of one or more :func:`shard_stats` dicts.

    Returns ``{"images", "candidates_per_image": {mean, median, min, max, hist, bins},
    "area_fraction": {hist, bins}, "seconds_per_image": {mean, median, p95, total}}``.
    """
    counts = np.array([c for p in parts for c in p["counts"]], dtype=float)
    secs = np.array([s for p in parts for s in p["seconds"]], dtype=float)
    area = np.sum([p["area_hist"] for p in parts], axis=0).tolist() if parts else [0] * (len(AREA_BINS) - 1)
    stat = lambda f, a: float(f(a)) if len(a) else 0.0
    return {
        "images": len(counts),
        "candidates_per_image": {"mean": stat(np.mean, counts), "median": stat(np.median, counts),
                                 "min": stat(np.min, counts), "max": stat(np.max, counts),
                                 "hist": np.histogram(counts, bins=COUNT_BINS)[0].tolist(), "bins": COUNT_BINS},
        "area_fraction": {"hist": [int(a) for a in area], "bins": AREA_BINS},
        "seconds_per_image": {"mean": stat(np.mean, secs), "median": stat(np.median, secs),
                              "p95": stat(lambda a: np.percentile(a, 95), secs), "total": float(secs.sum())},
    }


def flat_metrics(stats: dict, prefix: str = "candidates") -> dict[str, float]:
    """Scalar metrics of :func:`merge_stats` for ``mlflow.log_metrics``."""
    return {f"{prefix}/images": stats["images"],
            f"{prefix}/per_image_mean": stats["candidates_per_image"]["mean"],
            f"{prefix}/per_image_max": stats["candidates_per_image"]["max"],
            f"{prefix}/seconds_per_image": stats["seconds_per_image"]["mean"],
            f"{prefix}/seconds_per_image_p95": stats["seconds_per_image"]["p95"]}


def render_candidates(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], path: str | Path,
                      captions: Sequence[str] | None = None, max_masks: int = 24, ncols: int = 4,
                      title: str | None = None) -> Path:
    """PNG of each image beside its first ``max_masks`` candidates (stored order: best score first, drawn
    on top), in distinct colours; written atomically.

    Args:
        images: (H, W, 3) uint8 images.
        masks: per image a (K, H, W) bool stack (K may be 0), best first.
        captions: one per image (default: the candidate count).
    """
    from semires.viz import overlay, save_grid

    rng = np.random.default_rng(0)
    panels = []
    for i, (img, m) in enumerate(zip(images, masks)):
        m = np.asarray(m, bool)
        shown = m[:max_masks][::-1]  # the best is drawn last, so it stays visible
        colors = rng.integers(40, 256, size=(len(shown), 3)).astype(np.uint8)
        panels.append((img, captions[i] if captions else f"{len(m)} candidates"))
        panels.append((overlay(img, shown, colors=colors, alpha=0.45),
                       f"best {len(shown)} of {len(m)} candidates"))
    return save_grid(panels, path, ncols=ncols, title=title)
