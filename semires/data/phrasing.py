"""RefShapes expressions as text: meanings are realised with synonyms and templates, and any
generated sentence parses back to exactly one meaning (so data can be analysed by kind).

Text follows REFER: ``raw`` is the sentence as "written" (sometimes capitalised, with a period or
without the leading "the"), ``sent`` is ``raw`` lower-cased without end punctuation, and
``tokens`` is ``sent`` split on spaces.
"""

from __future__ import annotations

import numpy as np

from semires.data.expressions import Descriptor, Meaning

SIZE_WORDS = {"small": ("small", "little"), "medium": ("medium", "medium-sized"), "large": ("large", "big")}
COLOR_WORDS = {"red": ("red",), "orange": ("orange",), "yellow": ("yellow",), "green": ("green",),
               "blue": ("blue",), "purple": ("purple", "violet"), "white": ("white",)}
SHAPE_WORDS = {"blob": ("blob", "splotch"), "ring": ("ring", "donut"), "heart": ("heart",),
               "crescent": ("crescent", "moon"), "star": ("star",), "cross": ("cross", "plus sign"),
               "gear": ("gear", "cog"), "triangle": ("triangle",)}
GENERIC_NOUNS = ("shape", "object", "thing")
ONE = "one"  # "the red one": only after an adjective or a superlative
SUP_PREFIX = {"leftmost": ("leftmost",), "rightmost": ("rightmost",), "topmost": ("topmost", "highest"),
              "bottommost": ("bottommost", "lowest"), "largest": ("largest", "biggest"),
              "smallest": ("smallest",)}
SUP_SUFFIX = {"leftmost": ("on the far left", "furthest to the left"),
              "rightmost": ("on the far right", "furthest to the right"),
              "topmost": ("furthest up", "nearest the top"), "bottommost": ("furthest down", "nearest the bottom")}
REL_WORDS = {"left_of": ("left of", "to the left of", "on the left of"),
             "right_of": ("right of", "to the right of", "on the right of"),
             "above": ("above", "over"), "below": ("below", "under", "beneath")}
BETWEEN_WORDS = ("between", "in between")


def _pick(options, rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _np(d: Descriptor, rng: np.random.Generator, after_superlative: bool = False) -> str:
    words = []
    if d.size:
        words.append(_pick(SIZE_WORDS[d.size], rng))
    if d.color:
        words.append(_pick(COLOR_WORDS[d.color], rng))
    if d.shape:
        words.append(_pick(SHAPE_WORDS[d.shape], rng))
    else:
        words.append(_pick(GENERIC_NOUNS + ((ONE,) if words or after_superlative else ()), rng))
    return " ".join(words)


def realize(m: Meaning, rng: np.random.Generator) -> str:
    """Lower-case sentence for meaning ``m``; synonyms and templates drawn from ``rng``."""
    if m.kind == "attr":
        return f"the {_np(m.target, rng)}"
    if m.kind == "superlative":
        if m.op in SUP_SUFFIX and rng.random() < 0.4:
            return f"the {_np(m.target, rng)} {_pick(SUP_SUFFIX[m.op], rng)}"
        return f"the {_pick(SUP_PREFIX[m.op], rng)} {_np(m.target, rng, after_superlative=True)}"
    if m.kind == "relation":
        return f"the {_np(m.target, rng)} {_pick(REL_WORDS[m.op], rng)} the {_np(m.anchors[0], rng)}"
    if m.kind == "between":
        a, b = m.anchors
        return f"the {_np(m.target, rng)} {_pick(BETWEEN_WORDS, rng)} the {_np(a, rng)} and the {_np(b, rng)}"
    raise ValueError(f"unknown meaning kind {m.kind!r}")


def styled(sent: str, rng: np.random.Generator) -> str:
    """A REFER-like ``raw`` for ``sent``: sometimes without the leading "the", capitalised, with a period."""
    raw = sent
    if raw.startswith("the ") and rng.random() < 0.25:
        raw = raw[4:]
    if rng.random() < 0.3:
        raw = raw[0].upper() + raw[1:]
    if rng.random() < 0.15:
        raw += "."
    return raw


def normalize(raw: str) -> str:
    """REFER ``sent`` of a ``raw`` sentence: lower case, no end punctuation, single spaces."""
    return " ".join(raw.lower().strip().rstrip(".!?").split())


# -- parsing ---------------------------------------------------------------------------------
def _phrases(table: dict) -> list[tuple[tuple[str, ...], str]]:
    """(token tuple, key) pairs, longest first so "to the left of" wins over "left of"."""
    pairs = [(tuple(w.split()), key) for key, words in table.items() for w in words]
    return sorted(pairs, key=lambda p: -len(p[0]))


_SIZE, _COLOR, _SHAPE = _phrases(SIZE_WORDS), _phrases(COLOR_WORDS), _phrases(SHAPE_WORDS)
_PREFIX, _SUFFIX, _REL = _phrases(SUP_PREFIX), _phrases(SUP_SUFFIX), _phrases(REL_WORDS)
_BETWEEN = _phrases({"between": BETWEEN_WORDS})


def _take(toks: list[str], i: int, table) -> tuple[str | None, int]:
    for words, key in table:
        if tuple(toks[i:i + len(words)]) == words:
            return key, i + len(words)
    return None, i


def _parse_np(toks: list[str], i: int, sent: str, after_superlative: bool = False) -> tuple[Descriptor, int]:
    size, i = _take(toks, i, _SIZE)
    color, i = _take(toks, i, _COLOR)
    shape, j = _take(toks, i, _SHAPE)
    if shape is None:
        nouns = GENERIC_NOUNS + ((ONE,) if size or color or after_superlative else ())
        if i >= len(toks) or toks[i] not in nouns:
            raise ValueError(f"no noun at word {i + 1} of {sent!r}")
        j = i + 1
    return Descriptor(size, color, shape), j


def _expect_the(toks: list[str], i: int, sent: str) -> int:
    if i >= len(toks) or toks[i] != "the":
        raise ValueError(f"expected 'the' at word {i + 1} of {sent!r}")
    return i + 1


def parse(sent: str) -> Meaning:
    """The meaning of a RefShapes sentence (``sent`` or ``raw``); ValueError if it is not one."""
    toks = normalize(sent).split()
    i = 1 if toks[:1] == ["the"] else 0
    sup, i = _take(toks, i, _PREFIX)
    target, i = _parse_np(toks, i, sent, after_superlative=sup is not None)
    if sup is not None:
        meaning = Meaning("superlative", target, sup)
    elif i == len(toks):
        meaning = Meaning("attr", target)
    else:
        suffix, j = _take(toks, i, _SUFFIX)
        rel, k = _take(toks, i, _REL)
        btw, b = _take(toks, i, _BETWEEN)
        if suffix is not None:
            meaning, i = Meaning("superlative", target, suffix), j
        elif rel is not None:
            anchor, i = _parse_np(toks, _expect_the(toks, k, sent), sent)
            meaning = Meaning("relation", target, rel, (anchor,))
        elif btw is not None:
            first, i = _parse_np(toks, _expect_the(toks, b, sent), sent)
            if toks[i:i + 1] != ["and"]:
                raise ValueError(f"expected 'and' at word {i + 1} of {sent!r}")
            second, i = _parse_np(toks, _expect_the(toks, i + 1, sent), sent)
            meaning = Meaning("between", target, None, (first, second))
        else:
            raise ValueError(f"cannot read word {i + 1} of {sent!r}")
    if i != len(toks):
        raise ValueError(f"unexpected words after word {i} of {sent!r}")
    return meaning
