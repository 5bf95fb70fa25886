"""RefShapes scenes: a textured background with 3-8 shaded shapes painted in z-order.

Backgrounds mix smooth noise, gradients, stripes and checkers between two random colours (one
sometimes a palette colour itself), plus pixel noise, so no colour threshold isolates the
objects. Objects take a named palette colour with a shading ramp and pixel noise.

Occlusion: objects are painted back to front; an object's mask is its *visible* part (its own
coverage >= 0.5 minus every object painted after it). A placement is kept only if every object
keeps at least ``min_visible`` of its area, so every ref still names something one can see.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from semires.data import shapes as shape_lib
from semires.data.expressions import Facts

# Named palette (RGB in [0, 1]); names are the colour words of the expressions.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.13, 0.13), "orange": (0.96, 0.55, 0.10), "yellow": (0.95, 0.86, 0.15),
    "green": (0.18, 0.68, 0.22), "blue": (0.15, 0.33, 0.88), "purple": (0.55, 0.22, 0.75),
    "white": (0.95, 0.95, 0.93),
}
# Extent (radius) per size class as a fraction of the image side. The classes are separated by
# >= 25% so the size words and 'largest'/'smallest' stay decidable by eye.
SIZES: dict[str, tuple[float, float]] = {"small": (0.06, 0.08), "medium": (0.10, 0.125), "large": (0.156, 0.18)}
PLACE_TRIES = 30  # placements tried per object before it is dropped


@dataclass
class SceneObject:
    """One painted object: what expressions may say about it, its rotation (radians), and its
    ``full`` and ``visible`` masks, (H, W) bool."""

    facts: Facts
    angle: float
    full: np.ndarray
    visible: np.ndarray


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth multi-octave value noise, (h, w) float32 in [0, 1]."""
    out = np.zeros((h, w), np.float32)
    for octave, cells in enumerate((int(rng.integers(2, 5)), int(rng.integers(5, 10)), int(rng.integers(10, 18)))):
        grid = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
        out += np.asarray(grid.resize((w, h), Image.BICUBIC), np.float32) * 0.5 ** octave
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _pattern(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w) float32 mixing field in [0, 1] of the given kind."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    along = (xx * math.cos(phi) + yy * math.sin(phi)) / max(h, w)
    if kind == "noise":
        return _noise(rng, h, w)
    if kind == "gradient":
        return (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    if kind == "stripes":
        wave = np.sin(2 * math.pi * rng.uniform(3, 11) * along + rng.uniform(0, 2 * math.pi))
        return 0.5 + 0.5 * np.tanh(rng.uniform(0.8, 4.0) * wave) / math.tanh(4.0)
    if kind == "checker":
        cells = rng.uniform(4, 10) / max(h, w)
        c, s = math.cos(phi), math.sin(phi)
        a, b = np.floor((xx * c + yy * s) * cells), np.floor((-xx * s + yy * c) * cells)
        return ((a + b) % 2).astype(np.float32)
    raise ValueError(kind)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:  # a palette colour in the background defeats colour thresholds
        base = np.asarray(list(COLORS.values())[int(rng.integers(len(COLORS)))])
        return np.clip(base * rng.uniform(0.7, 1.0), 0, 1)
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.6), rng.uniform(0.25, 0.9))
    return np.asarray(rgb)


def background(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """Textured background, (h, w, 3) float32 in [0, 1]; ``strength`` in [0, 1] scales contrast."""
    c1, c2 = _random_color(rng), _random_color(rng)
    kinds = ("noise", "gradient", "stripes", "checker")
    k = rng.choice(len(kinds), size=2, replace=False, p=[0.35, 0.2, 0.3, 0.15])
    field = _pattern(kinds[k[0]], rng, h, w)
    if rng.random() < 0.6:
        field = 0.6 * field + 0.4 * _pattern(kinds[k[1]], rng, h, w)
    c2 = c1 + strength * (c2 - c1)
    img = c1[None, None, :] * (1 - field[..., None]) + c2[None, None, :] * field[..., None]
    img += rng.normal(0, 0.035 * strength, (h, w, 3))
    return img.astype(np.float32)


def _paint(img: np.ndarray, y0: int, x0: int, cov: np.ndarray, color: str, rng: np.random.Generator) -> None:
    """Alpha-blend a shaded palette colour onto ``img`` in place where ``cov`` > 0."""
    h, w = cov.shape
    if h == 0 or w == 0:
        return
    phi = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx * math.cos(phi) + yy * math.sin(phi)) / max(h, w, 1)
    shade = 1 + rng.uniform(0.1, 0.25) * (ramp - ramp.mean()) * 2
    tex = np.asarray(COLORS[color], np.float32)[None, None, :] * shade[..., None]
    tex += rng.normal(0, 0.03, (h, w, 3)).astype(np.float32)
    region = img[y0:y0 + h, x0:x0 + w]
    region += cov[..., None] * (tex - region)


def _candidate_centre(rng, r, size, placed, overlap):
    if overlap and placed:
        other = placed[int(rng.integers(len(placed)))].facts
        d = rng.uniform(0.45, 0.95) * (r + other.radius)
        a = rng.uniform(0, 2 * math.pi)
        cx, cy = other.cx + d * math.cos(a), other.cy + d * math.sin(a)
    else:
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    # Rounded here so that the stored geometry is exactly what was drawn and reasoned about.
    return round(float(cx), 3), round(float(cy), 3)


def compose(rng: np.random.Generator, size: int, n_objects: int, occlusion: float, min_visible: float,
            texture_strength: float, required: tuple[str, ...] = (), supersample: int = 2
            ) -> tuple[np.ndarray, list[SceneObject]]:
    """Paint one scene.

    Args:
        rng: the image's own generator (all randomness of the image comes from it).
        size: image side in pixels; n_objects: objects to try to place (some may be dropped).
        occlusion: probability in [0, 1] that an object is placed overlapping an earlier one;
            otherwise its disc must stay clear of all earlier ones.
        min_visible: fraction in (0, 1] of its own area every object must keep visible.
        required: shape categories forced onto randomly chosen objects (e.g. two of a split's group).
    Returns:
        (size, size, 3) uint8 RGB image and the objects in painting (z) order.
    """
    img = background(rng, size, size, texture_strength)
    placed: list[SceneObject] = []
    forced = dict(zip(rng.permutation(n_objects)[:len(required)].tolist(), required))
    for i in range(n_objects):
        shape = forced.get(i) or shape_lib.SHAPES[int(rng.integers(len(shape_lib.SHAPES)))]
        size_name = list(SIZES)[int(rng.integers(len(SIZES)))]
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        r = round(float(rng.uniform(*SIZES[size_name]) * size), 3)
        params = shape_lib.sample_params(shape, rng)
        angle = shape_lib.sample_angle(shape, rng)
        aspect = float(rng.uniform(0.87, 1.15))
        overlap = rng.random() < occlusion
        reach = r * max(aspect, 1 / aspect)  # keeps the whole shape inside the image
        for _ in range(PLACE_TRIES):
            cx, cy = _candidate_centre(rng, reach, size, placed, overlap)
            if not (reach <= cx <= size - reach and reach <= cy <= size - reach):
                continue
            if not overlap and any(math.hypot(cx - o.facts.cx, cy - o.facts.cy) < 1.05 * (r + o.facts.radius)
                                   for o in placed):
                continue
            y0, x0, cov = shape_lib.rasterize(shape, params, cx, cy, r, angle, aspect, size, size, supersample)
            full = np.zeros((size, size), bool)
            full[y0:y0 + cov.shape[0], x0:x0 + cov.shape[1]] = cov >= 0.5
            if not full.any():
                continue
            if all((o.visible & ~full).sum() >= min_visible * o.full.sum() for o in placed):
                break
        else:
            continue  # no placement kept everything visible enough: drop this object
        for o in placed:
            o.visible &= ~full
        _paint(img, y0, x0, cov, color, rng)
        placed.append(SceneObject(Facts(shape, color, size_name, cx, cy, r), angle, full, full.copy()))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), placed
