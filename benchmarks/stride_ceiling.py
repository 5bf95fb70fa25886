"""The best mIoU a model can reach when it predicts at a given logit stride (RefShapes val refs).

A model that reads an S px input and predicts logits at stride s sees an (S/s) x (S/s) grid; the
evaluation upsamples those logits bilinearly to the image and thresholds them. This benchmark
takes each val ref's true mask, area-pools it to that grid (the best soft prediction the grid can
hold), upsamples it the way the evaluation does, thresholds at 0.5 and scores it against the true
mask. No model is involved: the numbers are ceilings that no training can pass, which is why the
CPU default predicts at stride 2 (``model.detail_stride``) instead of LAVT's 4.

    python benchmarks/stride_ceiling.py [--sizes 64,128] [--strides 4,2,1]

Writes benchmarks/results/stride_ceiling.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semires import io
from semires.data.index import RefIndex
from semires.data.synthetic import prepare
from semires.hardware import describe


def ceiling(mask: np.ndarray, size: int, stride: int) -> float:
    """IoU of the best stride-``stride`` prediction at input side ``size`` with ``mask`` (H, W) bool."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    grid = max(1, -(-size // stride))
    pooled = F.adaptive_avg_pool2d(m, (grid, grid))
    pred = F.interpolate(pooled, size=m.shape[-2:], mode="bilinear", align_corners=False) > 0.5
    truth = m > 0.5
    union = int((pred | truth).sum())
    return int((pred & truth).sum()) / union if union else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_supervised_bench"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--sizes", default="64,128", help="model input sides (px)")
    ap.add_argument("--strides", default="4,2,1")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stride_ceiling.json")
    args = ap.parse_args()
    _, index_path = prepare(args.work)
    index = RefIndex.load(index_path)
    masks = [index.ref_mask(r) > 0 for r in index.ref_ids(args.split)]
    sizes = [int(s) for s in args.sizes.split(",")]
    strides = [int(s) for s in args.strides.split(",")]
    rows, raw = [], []
    for size in sizes:
        for stride in strides:
            ious = np.array([ceiling(m, size, stride) for m in masks])
            raw.append({"size": size, "stride": stride, "mIoU": float(100 * ious.mean()),
                        "prec@0.5": float(100 * (ious > 0.5).mean()), "prec@0.9": float(100 * (ious > 0.9).mean())})
            rows.append([size, stride, f"{-(-size // stride)} x {-(-size // stride)}", round(raw[-1]["mIoU"], 1),
                         round(raw[-1]["prec@0.5"], 1), round(raw[-1]["prec@0.9"], 1)])
            print(rows[-1], flush=True)
    side = masks[0].shape[0] if masks else 0
    io.write_json(args.out, {
        "title": "Best reachable mIoU by logit stride (true masks, no model)",
        "columns": ["input px", "logit stride", "logit grid", "ceiling mIoU", "ceiling prec@0.5", "ceiling prec@0.9"],
        "rows": rows, "raw": raw,
        "notes": (f"RefShapes default ({args.split}, {len(masks)} refs, masks at {side} px): each true mask "
                  "area-pooled to the logit grid, upsampled bilinearly and thresholded at 0.5 as the evaluation "
                  "does, scored against itself. The CPU default model reads 64 px: LAVT's stride 4 caps it "
                  "near the first row's value."),
        "machine": describe("cpu"), "date": dt.date.today().isoformat()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
