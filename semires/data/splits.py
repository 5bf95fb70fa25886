"""Labeled / unlabeled partitions of the train split, per image (as in SemiRES).

All refs of a labeled image are labeled. The partition for ``(ratio, seed)`` is a prefix of one
seeded permutation of the sorted train image ids, so it is deterministic and a 1% labeled set
is contained in the 5% one for the same seed.

On disk (one folder per ratio, written atomically)::

    <out>/<ratio_name>/labeled.txt     image ids, one per line, ascending
    <out>/<ratio_name>/unlabeled.txt
    <out>/<ratio_name>/split.json      ratio, seed, counts of images and refs
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semires import io
from semires.data.index import RefIndex
from semires.errors import DataError


@dataclass(frozen=True)
class LabelSplit:
    """A partition of train image ids into labeled and unlabeled (disjoint, covering train)."""

    ratio: float
    seed: int
    labeled: tuple[int, ...]
    unlabeled: tuple[int, ...]


def ratio_name(ratio: float) -> str:
    """Folder name for a ratio given as a fraction: 0.01 -> ``'1pct'``, 0.001 -> ``'0.1pct'``."""
    pct = round(ratio * 100, 6)
    return f"{pct:g}pct"


def make_split(train_image_ids: list[int], ratio: float, seed: int) -> LabelSplit:
    """Partition ``train_image_ids`` so that ``ratio`` (0 < ratio <= 1) of images are labeled.

    At least one image is labeled, so tiny ratios on small sets stay usable.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    ids = np.asarray(sorted({int(i) for i in train_image_ids}), dtype=np.int64)
    if len(ids) == 0:
        raise ValueError("no train images to split")
    n_lab = min(len(ids), max(1, math.floor(ratio * len(ids) + 0.5)))
    perm = np.random.default_rng(seed).permutation(len(ids))
    lab = np.sort(ids[perm[:n_lab]])
    unl = np.sort(ids[perm[n_lab:]])
    return LabelSplit(ratio, seed, tuple(int(i) for i in lab), tuple(int(i) for i in unl))


def write_split(split: LabelSplit, index: RefIndex, out_dir: str | Path) -> Path:
    """Write one split folder atomically; returns the folder."""
    out_dir = Path(out_dir)
    n_refs = lambda ids: len(index.ref_ids("train", ids))
    with io.atomic_dir(out_dir) as tmp:
        (tmp / "labeled.txt").write_text("".join(f"{i}\n" for i in split.labeled))
        (tmp / "unlabeled.txt").write_text("".join(f"{i}\n" for i in split.unlabeled))
        io.write_json(tmp / "split.json", {
            "ratio": split.ratio, "seed": split.seed,
            "labeled_images": len(split.labeled), "unlabeled_images": len(split.unlabeled),
            "labeled_refs": n_refs(split.labeled), "unlabeled_refs": n_refs(split.unlabeled)})
    return out_dir


def make_splits(index: RefIndex, ratios: list[float], seed: int, out_dir: str | Path) -> dict[float, Path]:
    """Write a split folder for every ratio under ``out_dir``; returns ratio -> folder."""
    train = index.image_ids("train")
    return {r: write_split(make_split(train, r, seed), index, Path(out_dir) / ratio_name(r)) for r in ratios}


def read_ids(path: str | Path) -> list[int]:
    """Read an id-list file (one integer per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("id list not found", path, "run `semires data split` (the split stage) first")
    try:
        return [int(line) for line in path.read_text().split()]
    except ValueError as exc:
        raise DataError(f"not a list of integer ids ({exc})", path, "regenerate the split") from exc


def load_split(split_dir: str | Path) -> LabelSplit:
    """Read a split folder written by :func:`write_split`."""
    split_dir = Path(split_dir)
    meta = io.read_json(split_dir / "split.json")
    return LabelSplit(float(meta["ratio"]), int(meta["seed"]), tuple(read_ids(split_dir / "labeled.txt")),
                      tuple(read_ids(split_dir / "unlabeled.txt")))


def ratio_dir(splits: str | Path, ratio: float) -> Path:
    """The split folder of ``ratio`` under ``splits`` (``<splits>/<ratio_name(ratio)>``), which must exist.

    Raises :class:`DataError` naming the folder when the split stage did not write that ratio.
    """
    folder = Path(splits) / ratio_name(ratio)
    if not folder.is_dir():
        raise DataError(f"no split folder for label ratio {ratio:g}", folder,
                        f"add {ratio:g} to split.ratios and rerun the split stage")
    return folder
