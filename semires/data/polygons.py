"""Masks as COCO polygons that pycocotools rasterises back to exactly the same pixels.

RefCOCO's ``instances.json`` stores its (``iscrowd: 0``) objects as polygons, and code written
for it (the REFER API's ``getMask``, COCO's ``annToRLE``: ``merge(frPyObjects(polygons, h, w))``)
expects them. :func:`mask_to_polygons` writes a mask that way, losslessly:

- every polygon follows pixel *boundaries* (vertices on integer pixel corners, pixel ``(r, c)``
  spans ``[c, c + 1) x [r, r + 1)``), traced with the foreground on the right, so an object's
  outer ring runs clockwise on screen and each hole's ring the other way;
- pycocotools fills a polygon column by column at pixel centres (``x = c + 0.5``) with even-odd
  parity over its edges, so the horizontal boundary edges alone decide the pixels and boundary
  rings reproduce the mask exactly, holes included;
- one polygon per 4-connected component; a component's holes (a ring's inside, the gap an
  occluder leaves) join its outer ring in the same polygon through a *spine*: a segment from the
  ring's first vertex to the hole's and back along the same line. The two passes cross every
  pixel column at the same rows and cancel, so the spine adds no pixels, and the union of the
  polygons (``merge``) equals their sum (the original REFER ``getMask``): components are disjoint.

Only corners are kept (collinear unit steps are merged), so a polygon has one vertex per
direction change, as a hand-drawn COCO polygon would.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# unit steps of the four edge directions (east, south, west, north) in (x, y), y pointing down
_DX = np.array([1, 0, -1, 0])
_DY = np.array([0, 1, 0, -1])


def _padded(mask: np.ndarray) -> np.ndarray:
    """``mask`` with one background pixel around it (np.pad is slow for the small masks traced here)."""
    p = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    p[1:-1, 1:-1] = mask
    return p


def _edges(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed boundary unit edges (foreground on the right) of the padded mask ``p``: (direction, x0, y0) of
    every edge in the unpadded frame, int64."""
    inner = p[1:-1, 1:-1]
    out = []
    # (direction, where, start corner offset (dx, dy) from the pixel's top-left corner)
    for d, exposed, (ox, oy) in ((0, ~p[:-2, 1:-1], (0, 0)),   # east along the top, background above
                                 (1, ~p[1:-1, 2:], (1, 0)),    # south along the right side
                                 (2, ~p[2:, 1:-1], (1, 1)),    # west along the bottom
                                 (3, ~p[1:-1, :-2], (0, 1))):  # north along the left side
        r, c = np.nonzero(inner & exposed)
        out.append((np.full(len(r), d), c + ox, r + oy))
    return tuple(np.concatenate(a).astype(np.int64) for a in zip(*out))


def _successors(p: np.ndarray, d: np.ndarray, x: np.ndarray, y: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For every edge, the id of the next one along its ring: turn right where the pixel ahead on the right is
    background, go straight where the one ahead on the left is, else turn left (4-connected foreground)."""
    xe, ye = x + _DX[d], y + _DY[d]  # the edge's end corner
    # pixels around corner (xe, ye) in padded coordinates: up-left p[ye, xe], up-right p[ye, xe + 1] ...
    ul, ur, ll, lr = p[ye, xe], p[ye, xe + 1], p[ye + 1, xe], p[ye + 1, xe + 1]
    ahead_right = np.choose(d, [lr, ll, ul, ur])
    ahead_left = np.choose(d, [ur, lr, ll, ul])
    nd = np.where(~ahead_right, (d + 1) % 4, np.where(~ahead_left, d, (d + 3) % 4))
    return ids[nd, ye, xe]


def _rings(mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every closed boundary ring as (corners (n, 2) int64 x, y; the pixel (row, col) on its right)."""
    h, w = mask.shape
    p = _padded(mask)
    d, x, y = _edges(p)
    if len(d) == 0:
        return []
    ids = np.full((4, h + 1, w + 1), -1, np.int64)
    ids[d, y, x] = np.arange(len(d))
    nxt = _successors(p, d, x, y, ids).tolist()
    seen = np.zeros(len(d), bool)
    rings = []
    for start in np.flatnonzero(d == 0).tolist():  # every ring has an east edge; raster order of its start
        if seen[start]:
            continue
        loop, e = [], start
        while True:
            loop.append(e)
            e = nxt[e]
            if e == start:
                break
        idx = np.asarray(loop)
        seen[idx] = True
        di = d[idx]
        turn = np.empty(len(idx), bool)  # keep the corners only: where the direction changes
        turn[0] = di[0] != di[-1]
        np.not_equal(di[1:], di[:-1], out=turn[1:])
        rings.append((np.stack([x[idx][turn], y[idx][turn]], 1), (int(y[start]), int(x[start]))))
    return rings


def _signed_area(xy: np.ndarray) -> float:
    """Shoelace area; positive for rings with the foreground on the right (outer rings, y down)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_to_polygons(mask: np.ndarray) -> list[list[int]]:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (one per 4-connected component, in raster order of
    their top-left pixel) whose ``merge(frPyObjects(polygons, H, W))`` decodes to exactly ``mask``.

    Args:
        mask: (H, W) bool (or 0/1) mask.
    Returns:
        Polygons with integer pixel-corner coordinates in [0, W] x [0, H], at least 4 vertices each;
        an empty mask gives an empty list.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return []
    # trace inside the bounding box (objects are small next to their image), then shift back
    r0, c0 = int(rows[0]), int(cols[0])
    mask = mask[r0:int(rows[-1]) + 1, c0:int(cols[-1]) + 1]
    labels, _ = ndimage.label(mask)  # 4-connectivity, as the ring tracing
    outer: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for xy, (r, c) in _rings(mask):
        comp = int(labels[r, c])
        if _signed_area(xy) > 0:
            outer[comp] = xy
        else:
            holes.setdefault(comp, []).append(xy)
    polygons = []
    for comp in sorted(outer, key=lambda k: (int(outer[k][0, 1]), int(outer[k][0, 0]))):
        ring = outer[comp]
        parts = [ring[:1]]
        for hole in holes.get(comp, []):  # spine out to the hole, around it, and back the same way
            parts += [hole, hole[:1], ring[:1]]
        parts.append(ring[1:])
        polygons.append((np.concatenate(parts) + (c0, r0)).ravel().tolist())
    return polygons
