"""The pretraining pool: RefShapes images with every object painted by its shape category.

Only ``instances.json`` is read (images, annotations, categories); the pool's expressions are never
used. Masks decode through the REFER reader, so polygon and RLE annotations both work.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from semires.data import masks as mask_codec
from semires.data.refer import Refer
from semires.engine.transforms import normalize, resize_image, resize_mask
from semires.errors import DataError
from semires.models.category_head import category_lookup


class CategoryPool:
    """All images of a REFER folder at ``image_size``, with per-pixel category maps.

    Attributes:
        images: (N, S, S, 3) uint8.
        maps: (N, S, S) uint8; 0 = background, k = the k-th category (sorted ids, as the category head).
        num_categories: K.
    """

    def __init__(self, refer_dir: str | Path, image_size: int):
        refer_dir = Path(refer_dir)
        refer = Refer.load(refer_dir)
        lookup = category_lookup(refer.cats)
        if not lookup or max(lookup.values()) > 255:
            raise DataError(f"{len(lookup)} categories: the pool needs 1 to 255", refer_dir / "instances.json",
                            "point pretraining at a RefShapes pool")
        by_image: dict[int, list[int]] = defaultdict(list)
        for aid in sorted(refer.anns):  # annotation order = drawing order: later objects lie on top
            by_image[int(refer.anns[aid]["image_id"])].append(aid)
        self.image_ids = sorted(refer.imgs)
        self.num_categories = len(lookup)
        self.images = np.empty((len(self.image_ids), image_size, image_size, 3), np.uint8)
        self.maps = np.zeros((len(self.image_ids), image_size, image_size), np.uint8)
        from PIL import Image

        for n, iid in enumerate(self.image_ids):
            path = refer_dir / "images" / refer.imgs[iid]["file_name"]
            with Image.open(path) as im:
                self.images[n] = resize_image(np.asarray(im.convert("RGB")), image_size)
            for aid in by_image[iid]:
                mask = resize_mask(mask_codec.decode(refer.ann_rle(aid)), image_size)
                self.maps[n][mask] = lookup[int(refer.anns[aid]["category_id"])]

    def __len__(self) -> int:
        return len(self.image_ids)

    def batch(self, rows: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) float normalised images and (B, S, S) int64 category maps of ``rows``."""
        rows = np.asarray(rows)
        return normalize(self.images[rows]), torch.from_numpy(self.maps[rows].astype(np.int64))
