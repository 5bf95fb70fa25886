"""Deterministic, resumable batch order for training (single process or DDP).

The batch order is one endless stream: pass ``p`` over the data is a permutation seeded by
``(seed, p)``, and global step ``g`` takes stream positions ``[g * B * W, (g + 1) * B * W)``
(B per-process batch, W processes); rank ``r`` takes its ``r``-th slice of B. So the batch of
any step is known without replaying earlier ones: resuming at step ``g`` just starts there, and
every batch is full (small labeled sets wrap around into the next pass).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StreamBatchSampler(Sampler[list[int]]):
    """Yields the index lists of global steps ``start .. stop - 1`` for this rank."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self._pass, self._perm = -1, None

    def _permutation(self, p: int) -> torch.Tensor:
        if p != self._pass:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + p)
            self._pass, self._perm = p, torch.randperm(self.n, generator=g)
        return self._perm

    def batch(self, step: int) -> list[int]:
        """This rank's indices for global step ``step``."""
        first = (step * self.world_size + self.rank) * self.batch_size
        return [int(self._permutation(pos // self.n)[pos % self.n]) for pos in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def steps_per_epoch(n: int, batch_size: int, world_size: int, override: int | None = None) -> int:
    """Steps that make one epoch: ``override``, else one pass (at least 1 step)."""
    return override if override else max(1, n // (batch_size * world_size))
