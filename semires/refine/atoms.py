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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AtomCandidates:
    """The candidates of one image as atoms.

    Attributes:
        atom: (H, W) int32 atom id of every pixel, in [0, U).
        member: (U, K) bool, ``member[u, k]``: candidate k covers atom u.
        area: (K,) int64 pixel count of every candidate.
        pairs: (2, P) int64, the (atom, candidate) index pairs of ``member`` (kept so batches pack fast).
    """

    atom: torch.Tensor
    member: torch.Tensor
    area: torch.Tensor
    pairs: torch.Tensor

    @classmethod
    def from_masks(cls, masks: torch.Tensor | np.ndarray) -> AtomCandidates:
        """Atoms of a (K, H, W) bool candidate stack (K may be 0); computed on the CPU with NumPy."""
        m = np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks, dtype=bool)
        if m.ndim != 3:
            raise ValueError(f"candidates must be (K, H, W), got {m.shape}")
        k, h, w = m.shape
        if k == 0:
            return cls(torch.zeros(h, w, dtype=torch.int32), torch.zeros(1, 0, dtype=torch.bool),
                       torch.zeros(0, dtype=torch.int64), torch.zeros(2, 0, dtype=torch.int64))
        rows = np.ascontiguousarray(np.packbits(m.reshape(k, -1), axis=0).T)  # (HW, ceil(K/8)) membership bits
        keys = rows.view(np.dtype((np.void, rows.shape[1]))).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        member = np.unpackbits(uniq.view(np.uint8).reshape(len(uniq), rows.shape[1]), axis=1, count=k).astype(bool)
        sizes = np.bincount(inverse.ravel(), minlength=len(uniq)).astype(np.int64)
        area = member.T.astype(np.int64) @ sizes
        return cls(torch.from_numpy(inverse.reshape(h, w).astype(np.int32)), torch.from_numpy(member),
                   torch.from_numpy(area), torch.from_numpy(np.stack(np.nonzero(member)).astype(np.int64)))

    @property
    def num_candidates(self) -> int:
        return int(self.member.shape[1])

    def masks(self) -> torch.Tensor:
        """The (K, H, W) bool candidate stack back (``member[atom]``, moved to the front)."""
        return self.member[self.atom.long()].permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class AtomBatch:
    """Atoms of B samples, flat, for :func:`semires.refine.core.refine` (same results as the dense stack).

    Attributes:
        code: (B, H, W) int32, twice the pixel's atom id; atom ids are offset to be unique across the
            batch, in [0, num_atoms). Doubled so that ``code + P`` indexes (atom, in P) bins directly.
        pair_atom, pair_cand: (P,) int64, one pair per (atom, candidate covering it).
        area: (N,) int64 candidate areas; N = sum of K_b.
        owner: (N,) int64 sample of each candidate (candidates of sample b are contiguous, in stack order).
        atom_start: (B + 1,) int64, sample b owns atoms ``atom_start[b] .. atom_start[b + 1] - 1``.
        batch_size: B.
        num_atoms: total atoms of the batch.
    """

    code: torch.Tensor
    pair_atom: torch.Tensor
    pair_cand: torch.Tensor
    area: torch.Tensor
    owner: torch.Tensor
    atom_start: torch.Tensor
    batch_size: int
    num_atoms: int

    @classmethod
    def from_list(cls, items: Sequence[AtomCandidates], device: torch.device | str | None = None) -> AtomBatch:
        """Pack per-sample atoms (all at the same (H, W)); ``device`` defaults to the CPU."""
        if not items:
            raise ValueError("cannot pack an empty list of atom candidates")
        shapes = {tuple(a.atom.shape) for a in items}
        if len(shapes) > 1:
            raise ValueError(f"atom maps disagree on (H, W): {sorted(shapes)}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        n_atoms = torch.tensor([a.member.shape[0] for a in items])
        n_cands = torch.tensor([a.member.shape[1] for a in items])
        atom_off = torch.cumsum(n_atoms, 0) - n_atoms
        cand_off = torch.cumsum(n_cands, 0) - n_cands
        offsets = torch.stack([atom_off, cand_off], 1)[:, :, None]  # (B, 2, 1)
        pairs = torch.cat([a.pairs + off for a, off in zip(items, offsets)], 1)
        if int(n_atoms.sum()) >= 2**30:
            raise ValueError("too many atoms in one batch for int32 ids; use smaller batches")
        h, w = shapes.pop()
        code = torch.empty(len(items), h, w, dtype=torch.int32)
        for i, (a, uo) in enumerate(zip(items, atom_off.tolist())):
            torch.add(a.atom, uo, out=code[i])  # written in place: no stacked copy
        code.mul_(2)
        return cls(code=code.to(dev), pair_atom=pairs[0].to(dev), pair_cand=pairs[1].to(dev),
                   area=torch.cat([a.area for a in items]).to(dev),
                   owner=torch.repeat_interleave(torch.arange(len(items)), n_cands).to(dev),
                   atom_start=torch.cat([atom_off, n_atoms.sum().reshape(1)]).to(dev),
                   batch_size=len(items), num_atoms=int(n_atoms.sum()))

    @property
    def atom(self) -> torch.Tensor:
        """(B, H, W) int32 atom ids (batch-unique)."""
        return self.code // 2

    @property
    def size(self) -> tuple[int, int]:
        return int(self.code.shape[1]), int(self.code.shape[2])

    @property
    def device(self) -> torch.device:
        return self.code.device

    def overlap(self, pseudo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(|M_n and P_owner(n)|, |M_n|, |P_b|)`` as int64 (N,), (N,), (B,); ``pseudo`` is (B, H, W) bool."""
        # one integer histogram over (atom, in P) bins: |u and P| for every atom u, no masked copy
        hist = torch.bincount((self.code + pseudo).flatten(), minlength=2 * self.num_atoms)[1::2]
        inter = torch.zeros(self.area.shape[0], dtype=torch.int64, device=self.device)
        inter.index_add_(0, self.pair_cand, hist.index_select(0, self.pair_atom))
        cum = torch.cat([hist.new_zeros(1), hist.cumsum(0)])
        return inter, self.area, cum[self.atom_start[1:]] - cum[self.atom_start[:-1]]

    def union(self, selected: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: per sample, the union of its candidates with ``selected`` (N,) True."""
        hits = torch.zeros(self.num_atoms, dtype=torch.int32, device=self.device)
        hits.index_add_(0, self.pair_atom, selected.to(torch.int32).index_select(0, self.pair_cand))
        table = (hits > 0).repeat_interleave(2)  # indexed by code = 2 * atom
        return table.index_select(0, self.code.flatten()).view(self.code.shape)


def pack_for_device(items: Sequence[AtomCandidates], device: torch.device | str | None = None):
    """The faster packing of per-image atoms for ``device``, for :func:`semires.refine.core.refine`.

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
    from semires.refine.packing import CandidateBatch

    stacks = [a.member.to(dev)[a.atom.to(dev).long()].permute(2, 0, 1) for a in items]
    return CandidateBatch.from_list(stacks, size=tuple(items[0].atom.shape), device=dev)
