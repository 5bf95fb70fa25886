"""Mask encoding: COCO run-length encoding (RLE) through pycocotools, and the one nearest-neighbour
resize that every mask goes through.

Masks travel between stages as compressed RLE dicts ``{"size": [H, W], "counts": str}``
(JSON-safe); dense masks are ``np.ndarray`` of shape (H, W), dtype bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """Encode a (H, W) bool/uint8 mask as a JSON-safe compressed RLE dict."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_many(masks: np.ndarray) -> list[dict]:
    """Encode a (K, H, W) stack of masks; returns K RLE dicts."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def _c(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def decode(rle: dict) -> np.ndarray:
    """Decode one compressed RLE dict to a (H, W) bool mask."""
    return mask_utils.decode(_c(rle)).astype(bool)


def decode_many(rles: Sequence[dict], size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode RLEs of one image to a (K, H, W) bool stack (K may be 0, then ``size`` gives H, W)."""
    if not rles:
        if size is None:
            raise ValueError("size is required to decode an empty list of RLEs")
        return np.zeros((0, *size), dtype=bool)
    return mask_utils.decode([_c(r) for r in rles]).transpose(2, 0, 1).astype(bool)


def area(rle: dict) -> int:
    """Foreground pixel count of an RLE without decoding it."""
    return int(mask_utils.area(_c(rle)))


def bbox(rle: dict) -> list[float]:
    """COCO [x, y, w, h] box of an RLE."""
    return [float(v) for v in mask_utils.toBbox(_c(rle))]


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Convert a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) to compressed RLE.

    Follows pycocotools' ``COCO.annToRLE`` semantics so that decoding equals ``annToMask``.
    """
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = _c(segmentation)
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def nearest_resize(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, H, W) -> (K, h, w) nearest-neighbour resize that samples pixel centres: source index
    ``floor((dst + 0.5) * in / out)`` in float32, equal to ``torch.nn.functional.interpolate(...,
    mode="nearest-exact")``, and ~3x faster than it on bool stacks. Any dtype; shape (h, w) = ``size``.

    Every mask the model is trained or scored on (truth, candidates, pseudo-labels) is resized
    by this one function (through ``semires.engine.transforms.resize_mask`` and the candidate
    store), so that they land on the same pixels, and on pixel centres as the bilinear image
    resize does. Torch's plain "nearest" (``floor(dst * in / out)``) shifts a mask
    by half an input pixel: at 64 px from RefShapes' 128 px that cut the best candidate's IoU
    with the true object from 0.92 to 0.74."""
    idx = [np.minimum(np.floor((np.arange(o, dtype=np.float32) + np.float32(0.5)) * np.float32(i / o)).astype(np.int64),
                      i - 1)
           for i, o in zip(masks.shape[1:], size)]
    return np.take(np.take(masks, idx[0], axis=1), idx[1], axis=2)
