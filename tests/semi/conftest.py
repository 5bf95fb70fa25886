"""Fixtures of the semi-supervised tests: a burn-in teacher on RefShapes 'tiny' and a candidate source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semires.data.index import RefIndex
from semires.data.splits import load_split
from semires.engine.transforms import resize_mask
from semires.tracking import TrackingConfig

OFF = TrackingConfig(enabled=False)


class AnnotationCandidates:
    """Test stand-in for the candidates store: every annotated object of the image, plus its halves
    (so CPI has parts to unite) -- deterministic and cheap."""

    def __init__(self, index: RefIndex):
        self.index = index
        self.by_image: dict[int, list[int]] = {}
        for a in index.anns.values():
            self.by_image.setdefault(int(a["image_id"]), []).append(int(a["id"]))

    def masks(self, image_id: int, size) -> torch.Tensor:
        s = size if isinstance(size, int) else size[0]
        out = []
        for aid in self.by_image.get(int(image_id), []):
            m = resize_mask(self.index.ann_mask(aid), s)
            out.append(m)
            half = m.copy()
            half[: s // 2] = False
            out.append(half)
        return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, s, s, dtype=torch.bool)


@pytest.fixture(scope="session")
def semi_setup(refshapes_tiny, tmp_path_factory) -> dict:
    """{'index', 'split' (50% labeled), 'burn_in' (best.safetensors), 'text', 'root', 'candidates'} (read-only)."""
    from res_fixtures import tiny_burn_in, tiny_model_cfg, write_tiny_text_encoder

    from semires.train.supervised import train_supervised

    root = tmp_path_factory.mktemp("semi")
    index = RefIndex.load(refshapes_tiny["index"])
    split = load_split(refshapes_tiny["splits"][0.5])
    text = write_tiny_text_encoder(root / "text")
    train_supervised(index, split.labeled, root / "burn_in", tiny_model_cfg(text), tiny_burn_in(epochs=2), OFF,
                     progress=False)
    return {"index": index, "split": split, "burn_in": root / "burn_in" / "best.safetensors", "text": text,
            "root": root, "candidates": AnnotationCandidates(index)}
