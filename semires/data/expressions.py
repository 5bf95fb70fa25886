"""What RefShapes expressions mean, and which of them single out exactly one object.

An expression's *meaning* is evaluated as a predicate over all objects of the image. Spatial words
are vague near their borders ("left of" for an object up and to the left), so each is read twice:
a **strict** reading that the target must satisfy and a **loose** one that no other object may
satisfy. The generator keeps an expression only when the strict reading selects exactly the
target and the loose reading selects nothing else (:meth:`World.selects`). Objects are described
by :class:`Facts` (attributes plus nominal geometry in pixels).

Meanings (``Meaning.kind``) and their semantics, with ``S`` the image side and ``R`` a
:class:`Reading` (:data:`STRICT` or :data:`LOOSE`):

- ``attr``: a :class:`Descriptor` (any of shape, colour, size class); selects the objects whose
  attributes equal every attribute given ("the small red star").
- ``superlative`` ``op`` over the objects matching the descriptor (at least 2 of them):
  ``leftmost`` / ``rightmost`` / ``topmost`` / ``bottommost`` selects the object whose centre is
  more than ``SUP_MARGIN * S`` further in that direction than every other match; ``largest`` /
  ``smallest`` the one whose extent exceeds (falls short of) every other by the factor
  ``SIZE_RATIO``. No clear winner selects nothing. (Size superlatives never carry a size word.)
- ``relation`` ``op`` to one anchor: the anchor's descriptor must select exactly one object ``a``;
  then selects the matches ``t != a`` with, for ``left_of`` (mirrored for the others),
  ``dx = a.cx - t.cx > R.gap * (t.radius + a.radius)`` and ``|a.cy - t.cy| <= R.cone * dx``.
- ``between`` two anchors ``a != b`` (each selected uniquely): the matches ``t`` whose centre
  projects onto segment ``ab`` at a fraction in ``[R.span, 1 - R.span]`` and lies within
  ``R.width * |ab|`` of the line.

Sets of objects are bitmasks (bit ``i`` = object ``i``) so enumerating thousands of candidate
meanings per image stays cheap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

SUP_MARGIN = 0.05    # fraction of the image side a 'leftmost' etc. must lead by
SIZE_RATIO = 1.2     # extent factor a 'largest' / 'smallest' must lead by
SUPERLATIVES = ("leftmost", "rightmost", "topmost", "bottommost", "largest", "smallest")
RELATIONS = ("left_of", "right_of", "above", "below")
KINDS = ("attr", "superlative", "relation", "between")
KIND_WEIGHTS = {"attr": 1.0, "superlative": 1.0, "relation": 1.5, "between": 0.6}  # how often each kind is chosen
_ATTRS = ("size", "color", "shape")


@dataclass(frozen=True)
class Reading:
    """Thresholds of the spatial words (see the module docstring)."""

    gap: float    # 'left of': centres apart by more than gap * (sum of the two extents)
    cone: float   # 'left of': vertical offset at most cone * horizontal offset
    span: float   # 'between': projection onto the anchors' segment within [span, 1 - span]
    width: float  # 'between': distance from the anchors' line at most width * their distance


STRICT = Reading(gap=0.5, cone=0.75, span=0.25, width=0.2)  # what the target must satisfy
LOOSE = Reading(gap=0.0, cone=1.5, span=0.1, width=0.4)     # what no other object may satisfy


@dataclass(frozen=True)
class Facts:
    """What an expression may talk about for one object: attributes, centre and extent (pixels)."""

    shape: str
    color: str
    size: str
    cx: float
    cy: float
    radius: float


@dataclass(frozen=True)
class Descriptor:
    """A noun phrase's attributes; ``None`` means not mentioned."""

    size: str | None = None
    color: str | None = None
    shape: str | None = None

    def matches(self, f: Facts) -> bool:
        return all(getattr(self, a) is None or getattr(self, a) == getattr(f, a) for a in _ATTRS)

    @property
    def n_attrs(self) -> int:
        return (self.size is not None) + (self.color is not None) + (self.shape is not None)


@dataclass(frozen=True)
class Meaning:
    """A structured expression: ``kind`` in :data:`KINDS`, the target's descriptor, ``op`` (a
    superlative or relation name, else None) and the anchors' descriptors (0, 1 or 2)."""

    kind: str
    target: Descriptor
    op: str | None = None
    anchors: tuple[Descriptor, ...] = ()

    @property
    def n_words(self) -> int:
        """Attributes mentioned in total: a proxy for how long the expression reads."""
        return self.target.n_attrs + sum(a.n_attrs for a in self.anchors)


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _one(mask: int) -> bool:
    return mask != 0 and mask & (mask - 1) == 0


class World:
    """The objects of one image with cached spatial relations; evaluates meanings to bitmasks."""

    def __init__(self, facts: list[Facts], image_size: int):
        self.facts = list(facts)
        self.size = image_size
        self._match: dict[Descriptor, int] = {}
        n = len(self.facts)
        # rel[reading][op][a] / between[reading][a, b]: bitmask of the objects in that relation
        self.rel = {r: {op: [sum(1 << t for t in range(n) if self._related(r, op, self.facts[t], self.facts[a]))
                             for a in range(n)] for op in RELATIONS} for r in (STRICT, LOOSE)}
        self.between = {r: {(a, b): sum(1 << t for t in range(n) if self._between(r, t, a, b))
                            for a in range(n) for b in range(n) if a != b} for r in (STRICT, LOOSE)}

    @staticmethod
    def _related(r: Reading, op: str, t: Facts, a: Facts) -> bool:
        if t is a:
            return False
        along = {"left_of": a.cx - t.cx, "right_of": t.cx - a.cx, "above": a.cy - t.cy, "below": t.cy - a.cy}[op]
        across = abs(a.cy - t.cy) if op in ("left_of", "right_of") else abs(a.cx - t.cx)
        return along > r.gap * (t.radius + a.radius) and across <= r.cone * along

    def _between(self, r: Reading, t: int, a: int, b: int) -> bool:
        ft, fa, fb = self.facts[t], self.facts[a], self.facts[b]
        ex, ey = fb.cx - fa.cx, fb.cy - fa.cy
        length2 = ex * ex + ey * ey
        if t in (a, b) or length2 == 0:
            return False
        px, py = ft.cx - fa.cx, ft.cy - fa.cy
        frac = (px * ex + py * ey) / length2
        dist = abs(px * ey - py * ex) / math.sqrt(length2)
        return r.span <= frac <= 1 - r.span and dist <= r.width * math.sqrt(length2)

    def match(self, d: Descriptor) -> int:
        """Bitmask of objects whose attributes fit ``d``."""
        m = self._match.get(d)
        if m is None:
            m = self._match[d] = sum(1 << i for i, f in enumerate(self.facts) if d.matches(f))
        return m

    def superlative(self, op: str, mask: int) -> int:
        """The member of ``mask`` that clearly wins superlative ``op`` (as a bitmask), else 0."""
        members = _bits(mask)
        if len(members) < 2:
            return 0
        key = {"leftmost": lambda f: f.cx, "rightmost": lambda f: -f.cx, "topmost": lambda f: f.cy,
               "bottommost": lambda f: -f.cy, "largest": lambda f: -math.log(f.radius),
               "smallest": lambda f: math.log(f.radius)}[op]
        ranked = sorted(members, key=lambda i: key(self.facts[i]))
        margin = math.log(SIZE_RATIO) if op in ("largest", "smallest") else SUP_MARGIN * self.size
        lead = key(self.facts[ranked[1]]) - key(self.facts[ranked[0]])
        return 1 << ranked[0] if lead > margin else 0

    def denote(self, m: Meaning, reading: Reading = STRICT) -> int:
        """Bitmask of the objects ``m`` selects under ``reading`` (see the module docstring)."""
        base = self.match(m.target)
        if m.kind == "attr":
            return base
        if m.kind == "superlative":
            return self.superlative(m.op, base)
        anchors = [self.match(a) for a in m.anchors]
        if not all(_one(a) for a in anchors):
            return 0
        idx = [a.bit_length() - 1 for a in anchors]
        if m.kind == "relation":
            return base & self.rel[reading][m.op][idx[0]]
        if m.kind == "between" and idx[0] != idx[1]:
            return base & self.between[reading][idx[0], idx[1]]
        if m.kind == "between":
            return 0
        raise ValueError(f"unknown meaning kind {m.kind!r}")

    def selects(self, m: Meaning) -> int | None:
        """Index of the one object ``m`` refers to without ambiguity, else None: the strict
        reading selects exactly it and the loose reading nothing else."""
        sel = self.denote(m, STRICT)
        return sel.bit_length() - 1 if _one(sel) and self.denote(m, LOOSE) == sel else None


def _descriptors(f: Facts) -> list[Descriptor]:
    """Every descriptor (including the empty one) that ``f`` fits."""
    out = []
    for r in range(len(_ATTRS) + 1):
        for attrs in itertools.combinations(_ATTRS, r):
            out.append(Descriptor(**{a: getattr(f, a) for a in attrs}))
    return out


def unique_meanings(world: World) -> dict[int, list[Meaning]]:
    """All candidate meanings that refer to one object without ambiguity (:meth:`World.selects`),
    grouped by that object's index.

    Anchors are always the shortest descriptors that select their object alone.
    """
    n = len(world.facts)
    descs = list(dict.fromkeys(d for f in world.facts for d in _descriptors(f)))
    anchors: list[list[Descriptor]] = []
    for i in range(n):
        own = [d for d in _descriptors(world.facts[i]) if d.n_attrs and world.match(d) == 1 << i]
        shortest = min((d.n_attrs for d in own), default=0)
        anchors.append([d for d in own if d.n_attrs == shortest])
    out: dict[int, list[Meaning]] = {}

    def keep(sel: int, loose: int, *meaning) -> None:
        if _one(sel) and loose == sel:
            out.setdefault(sel.bit_length() - 1, []).append(Meaning(*meaning))

    # The rule is world.selects', computed from its cached parts without building the thousands
    # of Meaning objects that select nothing, several objects, or only under the strict reading.
    strict_rel, loose_rel = world.rel[STRICT], world.rel[LOOSE]
    strict_btw, loose_btw = world.between[STRICT], world.between[LOOSE]
    for d in descs:
        base = world.match(d)
        if _one(base):
            if d.n_attrs:
                keep(base, base, "attr", d)
        else:
            for op in SUPERLATIVES:
                if d.size is None or op not in ("largest", "smallest"):
                    sel = world.superlative(op, base)
                    keep(sel, sel, "superlative", d, op)
        for a in range(n):
            for op in RELATIONS:
                sel, loose = base & strict_rel[op][a], base & loose_rel[op][a]
                for ad in anchors[a]:
                    keep(sel, loose, "relation", d, op, (ad,))
        for a, b in itertools.combinations(range(n), 2):
            sel, loose = base & strict_btw[a, b], base & loose_btw[a, b]
            for ad in anchors[a]:
                for bd in anchors[b]:
                    keep(sel, loose, "between", d, None, (ad, bd))
    return out


def choose(world: World, meanings: list[Meaning], k: int, rng: np.random.Generator) -> list[Meaning]:
    """Pick up to ``k`` distinct meanings: a kind first (by :data:`KIND_WEIGHTS`, unused kinds
    before used ones), then a meaning of that kind favouring short ones and relations whose
    target phrase alone would be ambiguous (so the relation is needed)."""
    pool = list(meanings)
    picked: list[Meaning] = []
    while pool and len(picked) < k:
        kinds = sorted({m.kind for m in pool}, key=KINDS.index)
        fresh = [c for c in kinds if c not in {m.kind for m in picked}] or kinds
        kw = np.array([KIND_WEIGHTS[c] for c in fresh])
        kind = fresh[int(rng.choice(len(fresh), p=kw / kw.sum()))]
        of_kind = [m for m in pool if m.kind == kind]
        w = np.array([(2.0 if kind == "relation" and not _one(world.match(m.target)) else 1.0)
                      / (1 + 0.5 * m.n_words) for m in of_kind])
        m = of_kind[int(rng.choice(len(of_kind), p=w / w.sum()))]
        picked.append(m)
        pool.remove(m)
    return picked
