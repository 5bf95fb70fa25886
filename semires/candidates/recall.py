"""Recall of candidates against ground-truth objects: the share of annotated objects that some
candidate covers with IoU >= t. This bounds what IOM/CPI refinement can recover."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from semires.data import masks as mask_codec

THRESHOLDS = (0.5, 0.75, 0.8, 0.9)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) float64 IoU between bool stacks a (N, H, W) and b (M, H, W); 0 where both are empty."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = (fa @ fb.T).astype(np.float64)
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def best_ious(gt: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(N,) best IoU of each ground-truth mask (N, H, W) over the candidates (K, H, W); 0 if K = 0."""
    m = mask_iou(gt, candidates)
    return m.max(1) if m.shape[1] else np.zeros(len(gt))


def summarize(best: Sequence[float], thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """``{"objects", "mean_best_iou", "recall@t": percent}`` from best IoUs."""
    b = np.asarray(best, float)
    out = {"objects": len(b), "mean_best_iou": float(b.mean()) if len(b) else 0.0}
    out.update({f"recall@{t:g}": float(100 * (b >= t).mean()) if len(b) else 0.0 for t in thresholds})
    return out


def store_recall(store, index, image_ids: Iterable[int] | None = None, thresholds: Sequence[float] = THRESHOLDS,
                 progress: bool = True) -> dict:
    """Recall of a :class:`~semires.candidates.store.CandidateStore` on the objects that refs of
    ``index`` point to (every annotation of the index), for ``image_ids`` (default: all stored images).
    Images without stored candidates count as misses."""
    ids = sorted(store.image_ids if image_ids is None else {int(i) for i in image_ids})
    by_image: dict[int, list[dict]] = {}
    for a in index.anns.values():
        by_image.setdefault(int(a["image_id"]), []).append(a)
    best: list[float] = []
    for iid in tqdm(ids, desc="candidate recall", unit="img", disable=not progress):
        anns = by_image.get(iid, [])
        if not anns:
            continue
        gt = np.stack([mask_codec.decode(a["rle"]) for a in anns])
        if iid not in store:
            best.extend([0.0] * len(anns))
            continue
        best.extend(best_ious(gt, store.masks(iid).numpy()).tolist())
    return summarize(best, thresholds)
