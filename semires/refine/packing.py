"""Ragged candidate stacks of a batch, packed flat so refinement never loops over candidates.

Sample ``b`` of a batch has ``K_b >= 0`` candidate masks. They are stored as one flat stack
``masks`` (N = sum_b K_b, H, W) with ``owner`` (N,) telling the sample of each row. A padded
(B, Kmax, H, W) layout with per-sample counts converts to this one (:meth:`CandidateBatch.from_padded`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from semires.refine.counts import as_words, pixel_counts


@dataclass(frozen=True)
class CandidateBatch:
    """Candidate masks of B samples, flat.

    Attributes:
        masks: (N, H, W) bool, contiguous; N may be 0.
        owner: (N,) int64, the sample index in [0, batch_size) of each row (any order).
        batch_size: B.
    """

    masks: torch.Tensor
    owner: torch.Tensor
    batch_size: int

    def __post_init__(self) -> None:
        if self.masks.dim() != 3 or self.masks.dtype != torch.bool:
            raise ValueError(f"masks must be (N, H, W) bool, got {tuple(self.masks.shape)} {self.masks.dtype}")
        if self.owner.shape != (self.masks.shape[0],) or self.owner.dtype != torch.int64:
            raise ValueError(f"owner must be ({self.masks.shape[0]},) int64, got {tuple(self.owner.shape)} "
                             f"{self.owner.dtype}")
        if self.owner.device != self.masks.device:
            raise ValueError("masks and owner must be on the same device")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {self.batch_size}")

    @classmethod
    def from_list(cls, stacks: Sequence[torch.Tensor | np.ndarray], size: tuple[int, int] | None = None,
                  device: torch.device | str | None = None) -> CandidateBatch:
        """Pack per-sample stacks, each (K_b, H, W) bool (K_b may be 0), into one flat batch.

        ``size`` gives (H, W) when every stack is empty or the list is empty.
        """
        tensors = [torch.as_tensor(s) for s in stacks]
        for i, t in enumerate(tensors):
            if t.dim() != 3:
                raise ValueError(f"candidate stack {i} must be (K, H, W), got {tuple(t.shape)}")
        shapes = {tuple(t.shape[1:]) for t in tensors if t.shape[0] > 0}
        if size is not None:
            shapes.add(tuple(size))
        if len(shapes) > 1:
            raise ValueError(f"candidate stacks disagree on (H, W): {sorted(shapes)}")
        if not shapes:
            shapes = {tuple(tensors[0].shape[1:])} if tensors else set()
        if not shapes:
            raise ValueError("size is required to pack an empty list of candidate stacks")
        h, w = shapes.pop()
        dev = torch.device(device) if device is not None else (tensors[0].device if tensors else torch.device("cpu"))
        counts = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
        nonempty = [t.to(dev, torch.bool) for t in tensors if t.shape[0] > 0]
        masks = torch.cat(nonempty).contiguous() if nonempty else torch.zeros(0, h, w, dtype=torch.bool, device=dev)
        owner = torch.repeat_interleave(torch.arange(len(tensors), dtype=torch.int64), counts).to(dev)
        return cls(masks, owner, len(tensors))

    @classmethod
    def from_padded(cls, masks: torch.Tensor, counts: torch.Tensor) -> CandidateBatch:
        """Pack a padded (B, Kmax, H, W) bool stack whose sample b uses its first ``counts[b]`` rows."""
        if masks.dim() != 4:
            raise ValueError(f"padded candidates must be (B, Kmax, H, W), got {tuple(masks.shape)}")
        b, kmax = masks.shape[:2]
        counts = torch.as_tensor(counts, dtype=torch.int64, device=masks.device)
        if counts.shape != (b,) or bool((counts < 0).any()) or bool((counts > kmax).any()):
            raise ValueError(f"counts must be ({b},) in [0, {kmax}], got {counts.tolist()}")
        valid = torch.arange(kmax, device=masks.device)[None, :] < counts[:, None]
        owner = torch.arange(b, device=masks.device)[:, None].expand(b, kmax)[valid]
        return cls(masks.bool()[valid].contiguous(), owner.contiguous(), b)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def device(self) -> torch.device:
        return self.masks.device

    def counts(self) -> torch.Tensor:
        """(B,) int64 number of candidates per sample."""
        return torch.bincount(self.owner, minlength=self.batch_size)

    def to(self, device: torch.device | str) -> CandidateBatch:
        return CandidateBatch(self.masks.to(device), self.owner.to(device), self.batch_size)

    def sample(self, b: int) -> torch.Tensor:
        """(K_b, H, W) bool candidates of sample ``b`` (in packing order)."""
        return self.masks[self.owner == b]

    def overlap(self, pseudo: torch.Tensor, block_bytes: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(|M_n and P_owner(n)|, |M_n|, |P_b|)`` as int64 (N,), (N,), (B,); ``pseudo`` is (B, H, W) bool."""
        return pixel_counts(self.masks, self.owner, pseudo, block_bytes)

    def soft_overlap(self, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum of prob_owner(n) over M_n, |M_n|, sum of prob_b)`` as float64 (N,), int64 (N,), float64 (B,);
        ``prob`` is (B, H, W) float."""
        p = prob.double().flatten(1)
        flat = self.masks.flatten(1)
        return (flat.double() * p[self.owner]).sum(1), flat.sum(1), p.sum(1)

    def union(self, selected: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: per sample, the union of its candidates with ``selected`` (N,) True (empty if none).

        Masks are added as int64 words of 0/1 byte lanes (see :mod:`semires.refine.counts`), so a
        lane counts the selected candidates covering its pixel; at most 255 candidates per sample are
        added per round, so lanes never overflow. Integer ``index_add_`` is exact and has a
        deterministic CUDA kernel.
        """
        h, w = self.size
        hw, b = h * w, self.batch_size
        idx = selected.nonzero().flatten()
        if idx.numel() == 0:
            return torch.zeros(b, h, w, dtype=torch.bool, device=self.device)
        owner = self.owner.index_select(0, idx)
        words = as_words(self.masks.index_select(0, idx).reshape(-1, hw))  # index_select: far faster than [idx]
        # rank of each selected candidate within its sample: rounds of <= 255 per sample
        order = torch.argsort(owner, stable=True)
        first = torch.searchsorted(owner[order], owner[order], side="left")
        rank = torch.empty_like(owner)
        rank[order] = torch.arange(owner.numel(), device=self.device) - first
        rounds = int(rank.max()) // 255 + 1
        out = None
        for r in range(rounds):
            part = None if rounds == 1 else (rank // 255) == r
            acc = torch.zeros(b, words.shape[1], dtype=torch.int64, device=self.device)
            acc.index_add_(0, owner if part is None else owner[part], words if part is None else words[part])
            hit = acc.view(torch.uint8).view(b, -1) > 0
            out = hit if out is None else out | hit
        return out[:, :hw].reshape(b, h, w)


class CandidateSource(Protocol):
    """Anything that serves an image's candidates at a given size (e.g. ``semires.candidates``' store)."""

    def masks(self, image_id: int, size: tuple[int, int] | int) -> torch.Tensor:
        """(K, h, w) bool candidates of ``image_id`` resized to ``size``; K may be 0."""

