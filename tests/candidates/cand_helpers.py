"""Test fixtures for the candidates tests: a cheap deterministic generator for storage tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from semires.candidates.base import CandidateGenerator, Candidates


class BlobGenerator(CandidateGenerator):
    """Connected components of coarsely quantised colour; counts its calls. ``fail_after`` raises after
    that many images to simulate a crash mid-shard."""

    name = "blob-test"

    def __init__(self, fail_after: int | None = None, sleep: float = 0.0):
        self.calls = 0
        self.fail_after = fail_after
        self.sleep = sleep

    def generate(self, image: np.ndarray) -> Candidates:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        if self.sleep:
            import time

            time.sleep(self.sleep)
        q = (image.astype(np.int32) // 96)
        key = q[..., 0] * 9 + q[..., 1] * 3 + q[..., 2]
        masks = []
        for v in np.unique(key):
            lab, n = ndimage.label(key == v)
            masks += [lab == i for i in range(1, n + 1) if (lab == i).sum() >= 20]
        masks = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
        scores = np.linspace(1.0, 0.5, len(masks), dtype=np.float32) if len(masks) else np.zeros(0, np.float32)
        return Candidates(masks, scores)
