"""RefShapes shape categories: random parameters and anti-aliased rasterisation.

Every shape is an inside-test on local coordinates ``(u, v)`` normalised so that the shape fits
the unit disc (its *extent* is 1). A shape instance is a category plus a few random parameters
(spike count and depth of a star, Fourier coefficients of a blob, tooth count of a gear, ...), so
two stars differ in outline and boundaries carry detail that a coarse mask loses.

The eight categories fall in two groups, which define RefShapes' testA / testB splits (the
analogue of RefCOCO's people / other objects):

- ``curved``:  blob (Fourier contour), ring (wobbly annulus), heart, crescent
- ``angular``: star (5-9 uneven spikes), cross, gear (8-14 teeth, maybe a hole), triangle
"""

from __future__ import annotations

import math

import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "curved": ("blob", "ring", "heart", "crescent"),
    "angular": ("star", "cross", "gear", "triangle"),
}
SHAPES: tuple[str, ...] = GROUPS["curved"] + GROUPS["angular"]
GROUP_OF: dict[str, str] = {s: g for g, members in GROUPS.items() for s in members}
# Hearts are recognised upright; other shapes may turn freely.
_MAX_TILT = {"heart": math.radians(25)}
_TAU = 2 * math.pi
_BLOB_TABLE = 4096  # angle samples of a blob's outline (finer than any pixel step at the sizes used)


def sample_params(shape: str, rng: np.random.Generator) -> dict:
    """Random outline parameters of one ``shape`` instance (plain floats/lists, JSON-safe)."""
    if shape == "star":
        n = int(rng.integers(5, 10))
        return {"spikes": n, "inner": float(rng.uniform(0.38, 0.6)),
                "tips": [float(t) for t in rng.uniform(0.78, 1.0, n)]}
    if shape == "blob":
        k = np.arange(2, 8)
        amp = rng.uniform(0.0, 0.22, len(k)) / k ** 0.7
        phase = rng.uniform(0, _TAU, len(k))
        theta = np.linspace(0, _TAU, 720, endpoint=False)
        r = 1 + (amp[:, None] * np.cos(k[:, None] * theta + phase[:, None])).sum(0)
        return {"amp": (amp / r.max()).tolist(), "phase": phase.tolist(), "scale": float(1 / r.max())}
    if shape == "ring":
        return {"inner": float(rng.uniform(0.48, 0.66)), "wobble": float(rng.uniform(0.02, 0.07)),
                "lobes": int(rng.integers(3, 7)), "phase": float(rng.uniform(0, _TAU))}
    if shape == "heart":
        return {"squash": float(rng.uniform(0.9, 1.1))}
    if shape == "crescent":
        return {"offset": float(rng.uniform(0.35, 0.55)), "bite": float(rng.uniform(0.75, 0.9))}
    if shape == "cross":
        return {"width": float(rng.uniform(0.22, 0.38)), "length": float(rng.uniform(0.85, 0.95))}
    if shape == "gear":
        return {"teeth": int(rng.integers(8, 15)), "root": float(rng.uniform(0.7, 0.8)),
                "hole": float(rng.uniform(0.22, 0.34)) if rng.random() < 0.5 else 0.0}
    if shape == "triangle":
        ang = np.arange(3) * _TAU / 3 + rng.uniform(-0.25, 0.25, 3) - math.pi / 2
        rad = rng.uniform(0.85, 1.0, 3)
        return {"xs": (rad * np.cos(ang)).tolist(), "ys": (rad * np.sin(ang)).tolist()}
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def sample_angle(shape: str, rng: np.random.Generator) -> float:
    """In-plane rotation in radians (small for shapes read upright, any for the rest)."""
    tilt = _MAX_TILT.get(shape)
    return float(rng.uniform(-tilt, tilt) if tilt is not None else rng.uniform(0, _TAU))


def inside(shape: str, p: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bool array: which local points ``(u, v)`` (any equal shapes, float) lie in the shape."""
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u) % _TAU
    if shape == "star":
        n = p["spikes"]
        tips = np.asarray(p["tips"])
        s = theta * n / _TAU
        k = np.floor(s).astype(int) % n
        f = s - np.floor(s)
        r = np.where(f < 0.5, tips[k] + (p["inner"] - tips[k]) * 2 * f,
                     p["inner"] + (tips[(k + 1) % n] - p["inner"]) * (2 * f - 1))
        return rho <= r
    if shape == "blob":
        # radius looked up on a fine angle table: one cosine sum per table entry, not per sample
        table = np.linspace(0, _TAU, _BLOB_TABLE, endpoint=False)
        r = p["scale"] + sum(a * np.cos(k * table + ph) for k, (a, ph) in enumerate(zip(p["amp"], p["phase"]), 2))
        return rho <= r[(theta * (_BLOB_TABLE / _TAU)).astype(np.int64) % _BLOB_TABLE]
    if shape == "ring":
        w = 1 - p["wobble"] + p["wobble"] * np.cos(p["lobes"] * theta + p["phase"])
        return (rho <= w) & (rho >= p["inner"] * w)
    if shape == "heart":
        # (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.14, 1.14], y in [-1, 1.25]; y points up.
        x = u * 1.22 / p["squash"]
        y = -v * 1.22 + 0.12
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if shape == "crescent":
        return (rho <= 1) & (np.hypot(u - p["offset"], v) > p["bite"])
    if shape == "cross":
        w, length = p["width"], p["length"]
        au, av = np.abs(u), np.abs(v)
        return ((au <= w) & (av <= length)) | ((av <= w) & (au <= length))
    if shape == "gear":
        f = (theta * p["teeth"] / _TAU) % 1.0
        tooth = np.clip((0.3 - np.abs(f - 0.5)) / 0.08, 0, 1)  # trapezoid teeth with slanted flanks
        r = p["root"] + (1 - p["root"]) * tooth
        return (rho <= r) & (rho >= p["hole"])
    if shape == "triangle":
        xs, ys = p["xs"], p["ys"]
        sides = [(xs[(i + 1) % 3] - xs[i]) * (v - ys[i]) - (ys[(i + 1) % 3] - ys[i]) * (u - xs[i])
                 for i in range(3)]
        return ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | \
               ((sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def rasterize(shape: str, params: dict, cx: float, cy: float, radius: float, angle: float,
              aspect: float, height: int, width: int, supersample: int = 2) -> tuple[int, int, np.ndarray]:
    """Anti-aliased coverage of one shape instance, cropped to its bounding box.

    Args:
        shape, params: category and :func:`sample_params` output.
        cx, cy: centre in pixels (pixel ``(r, c)`` covers ``[c, c+1) x [r, r+1)``).
        radius: extent in pixels (the shape fits a disc of this radius before ``aspect``).
        angle: rotation in radians; aspect: x/y stretch factor in about [0.85, 1.15].
        height, width: image size; the crop is clipped to it.
        supersample: samples per pixel side.
    Returns:
        ``(y0, x0, cov)``: the crop's top-left pixel and cov, (h, w) float32 in [0, 1], the
        fraction of each pixel inside the shape.
    """
    reach = radius * max(aspect, 1 / aspect) + 1
    x0, x1 = max(0, math.floor(cx - reach)), min(width, math.ceil(cx + reach))
    y0, y1 = max(0, math.floor(cy - reach)), min(height, math.ceil(cy + reach))
    h, w = y1 - y0, x1 - x0
    if h <= 0 or w <= 0:
        return y0, x0, np.zeros((0, 0), np.float32)
    ss = supersample
    offs = (np.arange(ss) + 0.5) / ss
    ys = (y0 + np.arange(h)[:, None] + offs[None, :]).reshape(-1) - cy
    xs = (x0 + np.arange(w)[:, None] + offs[None, :]).reshape(-1) - cx
    dy, dx = np.meshgrid(ys, xs, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u = (c * dx + s * dy) / (radius * aspect)
    v = (-s * dx + c * dy) * aspect / radius
    ins = inside(shape, params, u, v).astype(np.float32)
    return y0, x0, ins.reshape(h, ss, w, ss).mean(axis=(1, 3))
