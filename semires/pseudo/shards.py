"""Compact, atomic storage of teacher predictions: uint8 probabilities in .npz shards.

A pseudo-label folder holds::

    shard-00000.npz ...   arrays ``ref_id`` (n,) int64, ``sent_id`` (n,) int64, ``image_id`` (n,) int64,
                          ``prob`` (n, S, S) uint8 = round(255 * p(object)),
                          ``mask`` (n, ceil(S*S/8)) uint8 = np.packbits of the teacher's argmax mask
    manifest.json         {"format", "image_size", "shards": [{"file", "count", "sha256"}], ...}
    _SUCCESS

Each shard is written atomically (temp file, then rename), so a killed stage leaves whole shards
only and a rerun skips them. Shards are read with ``np.load(allow_pickle=False)``: no code can run.
The argmax mask is kept exactly (1 bit per pixel) because ``p > 0.5`` on the quantised
probability can differ from the argmax by one quantisation step at the boundary.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semires import io
from semires.errors import DataError, NonFiniteError

FORMAT = "semires-pseudo/1"
CACHED_SHARDS = 4
Key = tuple[int, int]  # (ref_id, sent_id)


def quantize(prob: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] (any shape) -> uint8 ``round(255 p)`` (error <= 1/510).

    NaN or infinite values raise :class:`NonFiniteError` (numpy would turn them into 0 or 255 silently).
    """
    p = prob.detach().float().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob, np.float32)
    bad = int(p.size - np.count_nonzero(np.isfinite(p)))
    if bad:
        raise NonFiniteError(f"{bad} of {p.size} teacher probabilities are NaN or infinite", None,
                             "the teacher checkpoint is broken or diverged: retrain it (the burn_in stage)")
    return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 probabilities ``q / 255`` in [0, 1]."""
    return torch.as_tensor(np.asarray(q)).float().div_(255.0)


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.npz"


@dataclass(frozen=True)
class Shard:
    """One shard in memory (see module docstring for the arrays)."""

    ref_id: np.ndarray
    sent_id: np.ndarray
    image_id: np.ndarray
    prob: np.ndarray
    mask: np.ndarray
    size: int

    def __len__(self) -> int:
        return len(self.ref_id)

    def keys(self) -> list[Key]:
        return list(zip(self.ref_id.tolist(), self.sent_id.tolist()))

    def masks(self) -> np.ndarray:
        """(n, S, S) bool teacher argmax masks."""
        bits = np.unpackbits(self.mask, axis=1, count=self.size * self.size)
        return bits.reshape(len(self), self.size, self.size).astype(bool)


def write_shard(path: str | Path, ref_id, sent_id, image_id, prob: torch.Tensor | np.ndarray,
                mask: torch.Tensor | np.ndarray) -> Path:
    """Write one shard atomically.

    Args:
        ref_id, sent_id, image_id: (n,) ints.
        prob: (n, S, S) float probabilities in [0, 1] (or uint8 already quantised).
        mask: (n, S, S) bool argmax masks.
    """
    try:
        prob_q = np.asarray(prob) if np.asarray(prob).dtype == np.uint8 else quantize(prob)
    except NonFiniteError as exc:
        raise NonFiniteError(f"{exc.what}; shard not written", path, exc.fix) from None
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
    n, s, s2 = prob_q.shape
    if s != s2 or mask.shape != (n, s, s):
        raise ValueError(f"prob {prob_q.shape} and mask {mask.shape} must both be (n, S, S)")
    with io.atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, ref_id=np.asarray(ref_id, np.int64), sent_id=np.asarray(sent_id, np.int64),
                            image_id=np.asarray(image_id, np.int64), prob=prob_q,
                            mask=np.packbits(mask.reshape(n, -1), axis=1))
    return Path(path)


_ARRAYS = ("ref_id", "sent_id", "image_id", "prob", "mask")


def _load(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError("pseudo-label shard not found", path, "rerun the pseudo_label stage")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in names}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"unreadable pseudo-label shard ({type(exc).__name__}: {exc})", path,
                        "delete it and rerun the pseudo_label stage") from exc


def read_shard(path: str | Path) -> Shard:
    """Load a shard; a truncated or foreign file raises :class:`DataError` naming it."""
    arrays = _load(Path(path), _ARRAYS)
    return Shard(size=int(arrays["prob"].shape[1]), **arrays)


def read_keys(path: str | Path) -> list[Key]:
    """The (ref_id, sent_id) keys of a shard, without decoding its probabilities."""
    a = _load(Path(path), ("ref_id", "sent_id"))
    return list(zip(a["ref_id"].tolist(), a["sent_id"].tolist()))


class PseudoStore:
    """Read access to a finished pseudo-label folder: shards, and lookup by (ref_id, sent_id).

    ``verify``: every shard is checked against the manifest's sha256 on opening (once per process and file
    version, :func:`semires.io.verify_checksum`): a damaged shard is an error naming it, never read.
    """

    def __init__(self, root: str | Path, cached_shards: int = CACHED_SHARDS, verify: bool = True):
        self.root = Path(root)
        self.cached_shards = max(1, int(cached_shards))
        if not io.is_complete(self.root):
            raise DataError("pseudo-label folder is incomplete (no _SUCCESS)", self.root,
                            "run (or finish) the pseudo_label stage")
        self.manifest = io.read_json(self.root / "manifest.json")
        if self.manifest.get("format") != FORMAT:
            raise DataError(f"unknown pseudo-label format {self.manifest.get('format')!r}",
                            self.root / "manifest.json", "rerun the pseudo_label stage")
        self.image_size = int(self.manifest["image_size"])
        if verify:
            for s in self.manifest["shards"]:
                if "sha256" not in s:  # hand-made stores (tests, tools) may carry none
                    continue
                io.verify_checksum(self.root / s["file"], s["sha256"], "pseudo-label shard",
                                   "delete the pseudo-label folder and rerun the pseudo_label stage "
                                   "(`dvc repro pseudo_label`)")
        self._where: dict[Key, tuple[int, int]] | None = None
        self._cache: OrderedDict[int, Shard] = OrderedDict()

    @property
    def shard_files(self) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["shards"]]

    def shard(self, i: int) -> Shard:
        """Shard ``i``, decoded; the last ``cached_shards`` decoded shards stay in memory."""
        if i in self._cache:
            self._cache.move_to_end(i)
        else:
            self._cache[i] = read_shard(self.shard_files[i])
            while len(self._cache) > self.cached_shards:
                self._cache.popitem(last=False)
        return self._cache[i]

    def _index(self) -> dict[Key, tuple[int, int]]:
        if self._where is None:
            self._where = {}
            for i in range(len(self.shard_files)):
                for j, key in enumerate(read_keys(self.shard_files[i])):
                    self._where[key] = (i, j)
        return self._where

    def keys(self) -> list[Key]:
        return list(self._index())

    def __len__(self) -> int:
        return int(sum(s["count"] for s in self.manifest["shards"]))

    def get(self, key: Key) -> tuple[np.ndarray, np.ndarray]:
        """(prob (S, S) uint8, mask (S, S) bool) of one expression."""
        where = self._index().get((int(key[0]), int(key[1])))
        if where is None:
            raise DataError(f"no pseudo-label for ref {key[0]} sentence {key[1]}", self.root,
                            "rerun the pseudo_label stage on the same split")
        sh = self.shard(where[0])
        bits = np.unpackbits(sh.mask[where[1]], count=sh.size * sh.size).reshape(sh.size, sh.size)
        return sh.prob[where[1]], bits.astype(bool)
