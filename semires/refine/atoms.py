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
        code: (H, W) int32, twice the atom id of every pixel (atom ids in [0, U)); doubled so that
            ``code + P`` indexes (atom, in P) bins directly, with no per-step multiply.
        member: (U, K) bool, ``member[u, k]``: candidate k covers atom u.
        area: (K,) int64 pixel count of every candidate.
        pairs: (2, P) int64, the (atom, candidate) index pairs of ``member`` (kept so batches pack fast).
    """

    code: torch.Tensor
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
        return cls(torch.from_numpy(2 * inverse.reshape(h, w).astype(np.int32)), torch.from_numpy(member),
                   torch.from_numpy(area), torch.from_numpy(np.stack(np.nonzero(member)).astype(np.int64)))

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

    def masks(self) -> torch.Tensor:
        """The (K, H, W) bool candidate stack back (``member[atom]``, moved to the front)."""
        return self.member[self.atom.long()].permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class AtomBatch:
    """Atoms of B samples, for :func:`semires.refine.core.refine` (same results as the dense stack).

    The per-image atom maps are kept as they are (no batch copy) and every pass over pixels runs
    per sample, so its temporaries (H x W x 4 bytes) stay in the CPU cache; only the small per-atom
    and per-candidate tables are batch-wide.

    Attributes:
        codes: B tensors (H, W) int32, twice each pixel's atom id *within its sample*.
        pair_atom, pair_cand: (P,) int64, one pair per (atom, candidate covering it); atom ids here are
            batch-wide (sample b's atoms are ``atom_start[b] .. atom_start[b + 1] - 1``).
        area: (N,) int64 candidate areas; N = sum of K_b.
        owner: (N,) int64 sample of each candidate (candidates of sample b are contiguous, in stack order).
        atom_start: (B + 1,) int64 offsets of each sample's atoms.
        batch_size: B.
        num_atoms: total atoms of the batch.
    """

    codes: tuple[torch.Tensor, ...]
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
        shapes = {tuple(a.code.shape) for a in items}
        if len(shapes) > 1:
            raise ValueError(f"atom maps disagree on (H, W): {sorted(shapes)}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        n_atoms = torch.tensor([a.num_atoms for a in items])
        n_cands = torch.tensor([a.num_candidates for a in items])
        atom_off = torch.cumsum(n_atoms, 0) - n_atoms
        cand_off = torch.cumsum(n_cands, 0) - n_cands
        offsets = torch.stack([atom_off, cand_off], 1)[:, :, None]  # (B, 2, 1)
        pairs = torch.cat([a.pairs + off for a, off in zip(items, offsets)], 1)
        return cls(codes=tuple(a.code.to(dev) for a in items), pair_atom=pairs[0].to(dev), pair_cand=pairs[1].to(dev),
                   area=torch.cat([a.area for a in items]).to(dev),
                   owner=torch.repeat_interleave(torch.arange(len(items)), n_cands).to(dev),
                   atom_start=torch.cat([atom_off, n_atoms.sum().reshape(1)]).to(dev),
                   batch_size=len(items), num_atoms=int(n_atoms.sum()))

    @property
    def atom(self) -> torch.Tensor:
        """(B, H, W) int64 batch-wide atom ids (a copy; for inspection)."""
        return torch.stack([c.long() // 2 + int(s) for c, s in zip(self.codes, self.atom_start[:-1].tolist())])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.codes[0].shape[0]), int(self.codes[0].shape[1])

    @property
    def device(self) -> torch.device:
        return self.codes[0].device

    def overlap(self, pseudo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(|M_n and P_owner(n)|, |M_n|, |P_b|)`` as int64 (N,), (N,), (B,); ``pseudo`` is (B, H, W) bool."""
        starts = self.atom_start.tolist()
        # per sample: one integer histogram over (atom, in P) bins gives |u and P| for its atoms
        hist = torch.cat([torch.bincount((code + p).flatten(), minlength=2 * (e - s))[1::2]
                          for code, p, s, e in zip(self.codes, pseudo, starts, starts[1:])])
        inter = torch.zeros(self.area.shape[0], dtype=torch.int64, device=self.device)
        inter.index_add_(0, self.pair_cand, hist.index_select(0, self.pair_atom))
        cum = torch.cat([hist.new_zeros(1), hist.cumsum(0)])
        return inter, self.area, cum[self.atom_start[1:]] - cum[self.atom_start[:-1]]

    def union(self, selected: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: per sample, the union of its candidates with ``selected`` (N,) True."""
        hits = torch.zeros(self.num_atoms, dtype=torch.int32, device=self.device)
        hits.index_add_(0, self.pair_atom, selected.to(torch.int32).index_select(0, self.pair_cand))
        table = (hits > 0).repeat_interleave(2)  # indexed by 2 * atom
        h, w = self.size
        out = torch.empty(self.batch_size, h * w, dtype=torch.bool, device=self.device)
        starts = self.atom_start.tolist()
        for b, code in enumerate(self.codes):
            torch.index_select(table[2 * starts[b]:2 * starts[b + 1]], 0, code.flatten(), out=out[b])
        return out.view(self.batch_size, h, w)


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

    stacks = [a.member.to(dev)[a.code.to(dev).long() // 2].permute(2, 0, 1) for a in items]
    return CandidateBatch.from_list(stacks, size=tuple(items[0].code.shape), device=dev)
