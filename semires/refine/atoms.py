"""Candidates as *atoms*: the pixels of an image grouped by which candidates cover them.

An image's K candidate masks split its pixels into U atoms, each a set of pixels with the same
membership (covered by exactly the same candidates). SAM "everything" masks are nested and
overlapping regions, so U is small (tens to a few thousand) and an image's candidates fit in one
(H, W) int32 atom map plus a (U, K) membership table: 0.9 MB at 480x480 instead of K x 230 kB.

Candidates are fixed per image while the teacher's pseudo-mask P changes every step, so the atoms
are built once per image (:meth:`AtomCandidates.from_masks`, in the data loader) and every
refinement of that image then costs one pass over its H x W atom map instead of over K masks:

    |M_k and P| = sum over atoms u covered by M_k of |u and P|,   |u and P| = bincount(atom[P])

All counts are exact integers, so results equal the dense path (:class:`CandidateBatch`) bit for bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from semires.refine.packing import CandidateBatch


@dataclass(frozen=True)
class AtomCandidates:
    """The candidates of one image as atoms.

    Attributes:
        code: (H, W) int32, twice the atom id of every pixel (atom ids in [0, U)); doubled so that
            ``code + P`` indexes (atom, in P) bins directly, with no per-step multiply.
        member: (U, K) bool, ``member[u, k]``: candidate k covers atom u.
        area: (K,) int64 pixel count of every candidate.
        pairs: (2, P) int32, the (atom, candidate) index pairs of ``member`` (int32: half the memory traffic of
            the gathers that use them every step).
        bits: (U, ceil(K / 8)) uint8, ``member`` packed 8 candidates to a byte (``np.packbits`` order), so
            "does atom u hold any selected candidate" is one AND over a few bytes per atom.
    """

    code: torch.Tensor
    member: torch.Tensor
    area: torch.Tensor
    pairs: torch.Tensor
    bits: torch.Tensor

    @classmethod
    def from_masks(cls, masks: torch.Tensor | np.ndarray) -> AtomCandidates:
        """Atoms of a (K, H, W) bool candidate stack (K may be 0); computed on the CPU with NumPy."""
        m = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks, dtype=bool)
        if m.ndim != 3:
            raise ValueError(f"candidates must be (K, H, W), got {m.shape}")
        k, h, w = m.shape
        if k == 0:
            return cls(torch.zeros(h, w, dtype=torch.int32), torch.zeros(1, 0, dtype=torch.bool),
                       torch.zeros(0, dtype=torch.int64), torch.zeros(2, 0, dtype=torch.int32),
                       torch.zeros(1, 0, dtype=torch.uint8))
        rows = np.ascontiguousarray(np.packbits(m.reshape(k, -1), axis=0).T)  # (HW, ceil(K/8)) membership bits
        keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        bits = np.ascontiguousarray(uniq.view(np.uint8).reshape(len(uniq), rows.shape[1]))
        member = np.unpackbits(bits, axis=1, count=k).astype(bool)
        sizes = np.bincount(inverse.ravel(), minlength=len(uniq)).astype(np.int64)
        area = member.T.astype(np.int64) @ sizes
        return cls(torch.from_numpy(2 * inverse.reshape(h, w).astype(np.int32)), torch.from_numpy(member),
                   torch.from_numpy(area), torch.from_numpy(np.stack(np.nonzero(member)).astype(np.int32)),
                   torch.from_numpy(bits))

    @property
    def atom(self) -> torch.Tensor:
        """(H, W) int32 atom id of every pixel, in [0, U)."""
        return self.code // 2

    @property
    def num_atoms(self) -> int:
        return int(self.member.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.member.shape[1])

    def to(self, device: torch.device | str) -> AtomCandidates:
        """These atoms on ``device`` (self when already there)."""
        dev = torch.device(device)
        if self.code.device == dev:
            return self
        return AtomCandidates(self.code.to(dev), self.member.to(dev), self.area.to(dev), self.pairs.to(dev),
                              self.bits.to(dev))

    def masks(self) -> torch.Tensor:
        """The (K, H, W) bool candidate stack back (``member[atom]``, moved to the front)."""
        return self.member[self.atom.long()].permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class AtomBatch:
    """Atoms of B samples, for :func:`semires.refine.strategies.refine` (same results as the dense stack).

    Each sample keeps its own atoms as they are (no batch copy) and every pass runs per sample, so
    its temporaries (an H x W histogram input, the (atom, candidate) pairs) stay in the CPU cache;
    only the per-candidate results are batch-wide. The loop is over the B samples, never over
    candidates.

    Attributes:
        items: the B samples' :class:`AtomCandidates`, on the batch's device.
        area: (N,) int64 candidate areas; N = sum of K_b.
        owner: (N,) int64 sample of each candidate (candidates of sample b are contiguous, in stack order).
        cand_start: B + 1 offsets: sample b owns candidates ``cand_start[b] .. cand_start[b + 1] - 1``.
        batch_size: B.
    """

    items: tuple[AtomCandidates, ...]
    area: torch.Tensor
    owner: torch.Tensor
    cand_start: tuple[int, ...]
    batch_size: int

    @classmethod
    def from_list(cls, items: Sequence[AtomCandidates], device: torch.device | str | None = None) -> AtomBatch:
        """Pack per-sample atoms (all at the same (H, W)); ``device`` defaults to the CPU."""
        if not items:
            raise ValueError("cannot pack an empty list of atom candidates")
        shapes = {tuple(a.code.shape) for a in items}
        if len(shapes) > 1:
            raise ValueError(f"atom maps disagree on (H, W): {sorted(shapes)}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        items = [a.to(dev) for a in items]
        n_cands = [a.num_candidates for a in items]
        return cls(items=tuple(items), area=torch.cat([a.area for a in items]),
                   owner=torch.repeat_interleave(torch.arange(len(items), device=dev),
                                                 torch.tensor(n_cands, device=dev)),
                   cand_start=tuple(itertools.accumulate(n_cands, initial=0)), batch_size=len(items))

    @property
    def num_atoms(self) -> int:
        return sum(a.num_atoms for a in self.items)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.items[0].code.shape[0]), int(self.items[0].code.shape[1])

    @property
    def device(self) -> torch.device:
        return self.items[0].code.device

    def overlap(self, pseudo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(|M_n and P_owner(n)|, |M_n|, |P_b|)`` as int64 (N,), (N,), (B,); ``pseudo`` is (B, H, W) bool."""
        inter, parea = [], []
        for a, p in zip(self.items, pseudo):
            hist = _atoms_in(a, p)                       # |u and P| for every atom u, (U,) int64
            counts = torch.zeros(a.num_candidates, dtype=torch.int64, device=hist.device)
            inter.append(counts.index_add_(0, a.pairs[1], hist.index_select(0, a.pairs[0])))
            parea.append(hist.sum())
        return torch.cat(inter), self.area, torch.stack(parea)

    def soft_overlap(self, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum of prob_owner(n) over M_n, |M_n|, sum of prob_b)`` as float64 (N,), int64 (N,), float64 (B,);
        ``prob`` is (B, H, W) float."""
        inter, total = [], []
        for a, p in zip(self.items, prob):
            mass = torch.zeros(a.num_atoms, dtype=torch.float64, device=p.device)
            mass.index_add_(0, (a.code.flatten() >> 1).long(), p.flatten().double())
            per = torch.zeros(a.num_candidates, dtype=torch.float64, device=p.device)
            inter.append(per.index_add_(0, a.pairs[1].long(), mass.index_select(0, a.pairs[0].long())))
            total.append(mass.sum())
        return torch.cat(inter), self.area, torch.stack(total)

    def union(self, selected: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: per sample, the union of its candidates with ``selected`` (N,) True."""
        h, w = self.size
        out = torch.empty(self.batch_size, h * w, dtype=torch.bool, device=self.device)
        sel = selected.cpu().numpy()
        for b, a in enumerate(self.items):
            # an atom is in the union when its membership bits share a bit with the selection's
            mine = torch.from_numpy(np.packbits(sel[self.cand_start[b]:self.cand_start[b + 1]])).to(out.device)
            hits = (a.bits & mine).any(dim=1).bool()  # any() of uint8 is uint8
            table = hits.repeat_interleave(2)  # indexed by code = 2 * atom
            torch.index_select(table, 0, a.code.flatten(), out=out[b])
        return out.view(self.batch_size, h, w)


def _atoms_in(a: AtomCandidates, p: torch.Tensor) -> torch.Tensor:
    """(U,) int64: how many pixels of each atom of ``a`` lie in the (H, W) bool mask ``p``."""
    if a.code.device.type == "cpu":
        # count only the pixels inside P (a few percent of the image): NumPy's bincount over them
        # is several times faster than torch's over the whole (atom, in P) code map
        codes = a.code.numpy().ravel()[p.numpy().ravel()]
        return torch.from_numpy(np.bincount(codes >> 1, minlength=a.num_atoms).astype(np.int64, copy=False))
    # one integer histogram over (atom, in P) bins gives |u and P| for every atom u
    return torch.bincount((a.code + p).flatten(), minlength=2 * a.num_atoms)[1::2]


def pack_for_device(items: Sequence[AtomCandidates], device: torch.device | str | None = None):
    """The faster packing of per-image atoms for ``device``, for :func:`semires.refine.strategies.refine`.

    On the CPU refinement is bound by memory traffic, so the atom maps (one H x W pass) win; on CUDA
    the dense stack's single fused pass is faster than the atom path's gathers (see
    ``benchmarks/results/refine_speed_bench_cuda.json``), so the masks are expanded there
    (``member[atom]``, on the GPU). Both give identical results.

    Returns:
        :class:`AtomBatch` on the CPU, a dense :class:`~semires.refine.packing.CandidateBatch` otherwise.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        return AtomBatch.from_list(items, dev)
    return CandidateBatch.from_list([a.to(dev).masks() for a in items], size=tuple(items[0].code.shape), device=dev)
