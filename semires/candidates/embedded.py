"""The embedded "everything" generator: a weight-free STAND-IN for SAM (it is not SAM).

It lets the pipeline run end to end where no SAM checkpoint exists (CI, CPU-only machines,
RefShapes). Steps, for an (H, W, 3) uint8 image:

1. over-segment finely with Felzenszwalb's graph method (``base_scale``), so that object
   boundaries are almost always region boundaries;
2. build the region adjacency graph and, for each merge ``criterion``, merge the cheapest adjacent
   pair again and again (a hierarchy of ~2n regions). A region's *contrast* is the cost at which it
   is merged away: objects survive until their boundary with the background is crossed;
3. keep regions of enough contrast and a plausible size; scores are ``1 - exp(-contrast / 20)``;
4. split well-contrasted regions at narrow necks (watershed of the smoothed distance transform),
   because touching objects of one colour have no colour edge between them; parts, adjacent pairs
   of parts and complements are offered at a lower score;
5. greedy mask NMS (IoU > ``nms_iou``), at most ``max_candidates``.

Costs are Lab distances (CIE delta E) on a slightly smoothed image, which keeps pixel noise from
ordering the merges.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.segmentation import felzenszwalb, watershed

from semires.candidates.base import CandidateGenerator, Candidates, check_image
from semires.candidates.config import EmbeddedConfig

_SCORE_SCALE = 20.0  # delta E at which the score reaches 1 - 1/e
_SPLIT_DISCOUNT = 0.9  # split parts rank just below the region they come from


def region_graph(seg: np.ndarray, lab: np.ndarray):
    """Adjacency of the regions of a label image.

    Args:
        seg: (H, W) int labels 0..n-1. lab: (H, W, 3) float colours.
    Returns:
        n, edges {(i, j) i<j: [sum of colour differences across the shared boundary, pixel pairs]},
        sizes (n,) float64 pixel counts, csum (n, 3) float64 colour sums.
    """
    n = int(seg.max()) + 1
    a_l, b_l, w_l = [], [], []
    for l1, l2, c1, c2 in ((seg[:, :-1], seg[:, 1:], lab[:, :-1], lab[:, 1:]),
                           (seg[:-1], seg[1:], lab[:-1], lab[1:])):
        d = l1 != l2
        a, b = l1[d], l2[d]
        a_l.append(np.minimum(a, b))
        b_l.append(np.maximum(a, b))
        w_l.append(np.sqrt(((c1[d] - c2[d]) ** 2).sum(1)))
    a, b, w = np.concatenate(a_l).astype(np.int64), np.concatenate(b_l).astype(np.int64), np.concatenate(w_l)
    keys, inv = np.unique(a * n + b, return_inverse=True)
    sums, counts = np.bincount(inv, w), np.bincount(inv)
    edges = {(int(k) // n, int(k) % n): [float(s), int(c)] for k, s, c in zip(keys, sums, counts)}
    flat = seg.ravel()
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    csum = np.stack([np.bincount(flat, lab[..., ch].ravel(), minlength=n) for ch in range(3)], 1)
    return n, edges, sizes, csum


def merge_hierarchy(n: int, edges: dict, sizes: np.ndarray, csum: np.ndarray, criterion: str, image_area: float):
    """Greedy agglomeration by ``criterion``; returns (children, birth, death, node_sizes).

    Nodes 0..n-1 are the regions; node r >= n merges ``children[r] = (i, j)``. ``birth[r]`` is the
    cost that created it, ``death[r]`` the cost at which it was merged away (inf for the root).
    """
    size = list(sizes)
    mean = [tuple(c / max(s, 1.0)) for c, s in zip(csum.tolist(), size)]
    col = [list(c) for c in csum.tolist()]
    nbr: list[dict] = [{} for _ in range(n)]
    for (i, j), e in edges.items():
        nbr[i][j] = e
        nbr[j][i] = e

    def cost(i: int, j: int, e) -> float:
        bd = e[0] / e[1]
        if criterion == "boundary":
            return bd
        if criterion == "boundary_size":
            return bd * (min(size[i], size[j]) / image_area) ** 0.25
        cd = math.dist(mean[i], mean[j])
        return cd if criterion == "color" else 0.5 * (bd + cd)

    heap = [(cost(i, j, e), i, j) for (i, j), e in edges.items()]
    heapq.heapify(heap)
    alive = [True] * n
    children: list = [None] * n
    birth, death = [0.0] * n, [math.inf] * n
    while heap:
        c, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue
        r = len(children)
        children.append((i, j))
        alive[i] = alive[j] = False
        alive.append(True)
        birth.append(c)
        death.append(math.inf)
        death[i] = death[j] = c
        size.append(size[i] + size[j])
        col.append([p + q for p, q in zip(col[i], col[j])])
        mean.append(tuple(v / size[r] for v in col[r]))
        merged: dict = {}
        for src in (i, j):
            for t, e in nbr[src].items():
                if t == i or t == j:
                    continue
                m = merged.setdefault(t, [0.0, 0])
                m[0] += e[0]
                m[1] += e[1]
                del nbr[t][src]
        nbr.append(merged)
        for t, e in merged.items():
            nbr[t][r] = e
            heapq.heappush(heap, (cost(r, t, e), r, t))
    return children, np.array(birth), np.array(death), np.array(size)


def _members(n: int, children: list) -> np.ndarray:
    """(nodes, n) bool: which base regions each hierarchy node holds."""
    memb = np.zeros((len(children), n), dtype=bool)
    memb[np.arange(n), np.arange(n)] = True
    for r in range(n, len(children)):
        i, j = children[r]
        memb[r] = memb[i] | memb[j]
    return memb


def _nms_order(iou: np.ndarray, thresh: float, limit: int) -> list[int]:
    """Greedy NMS over rows already sorted by descending score; returns kept row indices."""
    kept, suppressed = [], np.zeros(len(iou), dtype=bool)
    for c in range(len(iou)):
        if suppressed[c]:
            continue
        kept.append(c)
        if len(kept) >= limit:
            break
        suppressed |= iou[c] > thresh
    return kept


def _pairwise_iou(w: np.ndarray, memb: np.ndarray) -> np.ndarray:
    """IoU of node unions: ``w`` (m, n) member sizes (float32), ``memb`` (m, n) 0/1 float32."""
    inter = w @ memb.T
    area = np.diag(inter).copy()
    union = area[:, None] + area[None] - inter
    return inter / np.maximum(union, 1e-9)


def _maxima(edt: np.ndarray, h: float) -> np.ndarray:
    """Local maxima plateaus (3x3) of a distance map at least ``h`` deeper than the plateau's own
    8-neighbourhood rim: a cheap stand-in for h-maxima that ignores flat ridges."""
    peak = (edt == ndimage.maximum_filter(edt, size=3)) & (edt > 0)
    rim = ndimage.minimum_filter(edt, size=5)
    return peak & (edt - rim >= h)


def split_at_necks(mask: np.ndarray, h: float, sigma: float, max_parts: int, min_px: int) -> list[np.ndarray]:
    """Parts of a (H, W) bool mask cut at narrow necks; with at most ``max_parts`` parts also adjacent
    pairs and each part's complement. Empty when the mask has one part. Works on the mask's box."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = max(ys.min() - 1, 0), ys.max() + 2, max(xs.min() - 1, 0), xs.max() + 2
    m = mask[y0:y1, x0:x1]
    edt = ndimage.distance_transform_edt(m)
    if sigma > 0:
        edt = ndimage.gaussian_filter(edt, sigma) * m
    markers, k = ndimage.label(_maxima(edt, h) & m)
    if k < 2:
        return []
    ws = watershed(-edt, markers, mask=m)
    parts = [ws == lab for lab in range(1, k + 1)]
    out = list(parts)
    if k <= max_parts:
        pairs = set()
        for a, b in ((ws[:, :-1], ws[:, 1:]), (ws[:-1], ws[1:])):
            d = (a != b) & (a > 0) & (b > 0)
            pairs.update(zip(np.minimum(a[d], b[d]).tolist(), np.maximum(a[d], b[d]).tolist()))
        out += [parts[i - 1] | parts[j - 1] for i, j in sorted(pairs)]
        out += [m & ~p for p in parts]
    full = []
    for p in out:
        if p.sum() >= min_px:
            f = np.zeros_like(mask)
            f[y0:y1, x0:x1] = p
            full.append(f)
    return full


def mask_nms(masks: np.ndarray, thresh: float, limit: int) -> list[int]:
    """Greedy NMS of (K, H, W) bool masks already sorted by descending score; returns kept indices.

    Exact IoU, computed only for pairs that could exceed ``thresh`` (area ratio >= thresh and
    overlapping boxes), on the overlap of their boxes: cheap for many small masks.
    """
    k = len(masks)
    if k == 0:
        return []
    rows, cols = masks.any(2), masks.any(1)
    area = masks.reshape(k, -1).sum(1).astype(np.int64)
    box = np.zeros((k, 4), dtype=np.int64)  # y0, y1 (exclusive), x0, x1
    for i in range(k):
        r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        box[i] = (r[0], r[-1] + 1, c[0], c[-1] + 1) if len(r) else (0, 0, 0, 0)
    kept: list[int] = []
    for i in range(k):
        ok = True
        if kept:
            kk = np.array(kept)
            ratio = np.minimum(area[kk], area[i]) / np.maximum(np.maximum(area[kk], area[i]), 1)
            y0, y1 = np.maximum(box[kk, 0], box[i, 0]), np.minimum(box[kk, 1], box[i, 1])
            x0, x1 = np.maximum(box[kk, 2], box[i, 2]), np.minimum(box[kk, 3], box[i, 3])
            for j, a, b, c, d in zip(kk[(ratio > thresh) & (y1 > y0) & (x1 > x0)],
                                     *(v[(ratio > thresh) & (y1 > y0) & (x1 > x0)] for v in (y0, y1, x0, x1))):
                inter = int(np.count_nonzero(masks[i, a:b, c:d] & masks[j, a:b, c:d]))
                if inter / (area[i] + area[j] - inter) > thresh:
                    ok = False
                    break
        if ok:
            kept.append(i)
            if len(kept) >= limit:
                break
    return kept


class EmbeddedGenerator(CandidateGenerator):
    """Weight-free class-agnostic candidates (a stand-in for SAM); deterministic, CPU only."""

    name = "embedded-hierarchy (SAM stand-in)"

    def __init__(self, cfg: EmbeddedConfig | None = None):
        self.cfg = cfg or EmbeddedConfig()

    def describe(self) -> dict:
        return {"name": self.name, **self.cfg.model_dump()}

    def generate(self, image: np.ndarray) -> Candidates:
        """Candidates of an (H, W, 3) uint8 RGB image; scores in [0, 1) from region contrast."""
        cfg = self.cfg
        image = check_image(image)
        h, w = image.shape[:2]
        area = float(h * w)
        min_px, max_px = max(1, round(cfg.min_area_frac * area)), cfg.max_area_frac * area
        lab = rgb2lab(image)
        cost_lab = ndimage.gaussian_filter(lab, (cfg.cost_sigma, cfg.cost_sigma, 0)) if cfg.cost_sigma else lab
        seg = felzenszwalb(image, scale=cfg.base_scale, sigma=0.0,
                           min_size=max(1, round(cfg.base_min_size_frac * area)))
        n, edges, sizes, csum = region_graph(seg, cost_lab)
        if n < 2 or not edges:
            return Candidates(np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        rows, contrast = [], []
        for criterion in cfg.criteria:
            children, birth, death, node_size = merge_hierarchy(n, edges, sizes, csum, criterion, area)
            keep = ((node_size >= min_px) & (node_size <= max_px) & (death >= cfg.min_contrast)
                    & (death > birth) & np.isfinite(death))
            idx = np.flatnonzero(keep)
            if len(idx):
                rows.append(_members(n, children)[idx])
                contrast.append(death[idx])
        if not rows:
            return Candidates(np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        memb, contrast = np.concatenate(rows), np.concatenate(contrast)
        order = np.argsort(-contrast, kind="stable")
        memb, contrast = memb[order], contrast[order]
        mf = memb.astype(np.float32)
        kept = _nms_order(_pairwise_iou(mf * sizes.astype(np.float32)[None], mf), cfg.nms_iou, cfg.max_candidates)
        masks = memb[kept][:, seg]
        scores = 1.0 - np.exp(-contrast[kept] / _SCORE_SCALE)
        extra, extra_scores = [], []
        for m, s, c in zip(masks[:cfg.split_max_regions], scores, contrast[kept]):
            if c >= cfg.split_contrast:
                parts = split_at_necks(m, cfg.split_h, cfg.split_sigma, cfg.split_max_parts, min_px)
                extra += parts
                extra_scores += [s * _SPLIT_DISCOUNT] * len(parts)
        if extra:
            masks = np.concatenate([masks, np.stack(extra)])
            scores = np.concatenate([scores, np.array(extra_scores)])
            order = np.argsort(-scores, kind="stable")
            masks, scores = masks[order], scores[order]
            kept = mask_nms(masks, cfg.nms_iou, cfg.max_candidates)
            masks, scores = masks[kept], scores[kept]
        return Candidates(np.ascontiguousarray(masks), scores.astype(np.float32))
