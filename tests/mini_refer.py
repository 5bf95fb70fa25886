"""A hand-made REFER folder (polygons and RLE, all splits) for data-layer tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from semires.data import masks as mask_codec

SPLITS = ["train", "train", "train", "train", "val", "testA", "testB", "train"]


def write_mini_refer(root: Path, n_images: int = 8, size: int = 32) -> Path:
    """Write ``n_images`` images with two objects each: a square (polygon) and a disc (RLE).

    Returns the folder, laid out as RefCOCO: instances.json, refs(unc).p, images/.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns, refs = [], [], []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_images):
        iid = 100 + i
        fname = f"img_{iid}.png"
        rgb = np.full((size, size, 3), 30 + 20 * i, np.uint8)
        Image.fromarray(rgb).save(root / "images" / fname)
        images.append({"id": iid, "file_name": fname, "height": size, "width": size})
        x0 = 2 + i % 4
        square = [[x0, 2, x0 + 10, 2, x0 + 10, 12, x0, 12]]
        disc = (xx - 22) ** 2 + (yy - 22) ** 2 <= 36
        anns.append({"id": 1000 + 2 * i, "image_id": iid, "category_id": 1, "segmentation": square,
                     "area": 100.0, "bbox": [x0, 2, 10, 10], "iscrowd": 0})
        anns.append({"id": 1001 + 2 * i, "image_id": iid, "category_id": 2,
                     "segmentation": mask_codec.encode(disc), "area": float(disc.sum()),
                     "bbox": mask_codec.bbox(mask_codec.encode(disc)), "iscrowd": 0})
        for k, (aid, name) in enumerate([(1000 + 2 * i, "square"), (1001 + 2 * i, "disc")]):
            rid = 10 * iid + k
            sents = [{"sent_id": 100 * rid + j, "sent": f"the {name} {w}", "raw": f"The {name} {w}",
                      "tokens": ["the", name, w]} for j, w in enumerate(["here", "there"])]
            refs.append({"ref_id": rid, "ann_id": aid, "image_id": iid, "category_id": k + 1,
                         "split": SPLITS[i % len(SPLITS)], "file_name": fname, "sentences": sents,
                         "sent_ids": [s["sent_id"] for s in sents]})
    (root / "instances.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "square", "supercategory": "shape"},
                       {"id": 2, "name": "disc", "supercategory": "shape"}]}))
    (root / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root
