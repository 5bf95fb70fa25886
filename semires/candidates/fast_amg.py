"""A faster SAM automatic mask generator that returns the masks ``SamAutomaticMaskGenerator`` returns.

Vanilla AMG spends most of its time outside the network: every batch of low-resolution logits is
upscaled to full resolution before any filter, each mask is run-length encoded by a Python loop
on the CPU, and the RLEs are decoded back into masks at the end. Here, with identical arithmetic
where it decides which masks survive:

1. the predicted-IoU filter runs before any upscaling (it only reads the IoU head, so this is
   exact);
2. only those survivors are upscaled (the same ``Sam.postprocess_masks``), in bounded chunks, for
   the stability score, the threshold, the boxes and the crop-edge filter; survivors are kept as
   their low-res logits, so memory stays small;
3. box NMS (torchvision ``batched_nms``, same scores and ties) runs on device;
4. only the NMS survivors are upscaled again and thresholded into the final bool masks: no RLE
   encode/decode round trip.

Optionally the image encoder runs under bf16 autocast on CUDA (``encoder_bf16``), which changes
the embedding slightly; ``benchmarks/candidates_bench.py`` measures the agreement.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.predictor import SamPredictor
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
)
from torchvision.ops.boxes import batched_nms, box_area

# Float32 logits upscaled at once (Sam.postprocess_masks goes through img_size x img_size first), in
# elements: 1 GiB on CUDA, 256 MiB on the CPU.
_UPSCALE_BUDGET = {"cuda": 1 << 28, "cpu": 1 << 26}


@dataclass
class AmgResult:
    """Masks of one image, ordered as vanilla AMG orders them (by NMS).

    masks (K, H, W) bool on the model's device; iou_preds, stability (K,) float32;
    boxes (K, 4) xyxy int (inclusive pixel coordinates, as segment-anything); points (K, 2) float64 xy.
    """

    masks: torch.Tensor
    iou_preds: torch.Tensor
    stability: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor


class FastAutomaticMaskGenerator:
    """Drop-in for ``SamAutomaticMaskGenerator`` (same parameters and defaults, ``point_grids`` aside)."""

    def __init__(self, model: Sam, points_per_side: int = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, min_mask_region_area: int = 0,
                 encoder_bf16: bool = False):
        self.predictor = SamPredictor(model)
        self.point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.encoder_bf16 = encoder_bf16
        self.last_counts: dict[str, int] = {}  # masks surviving each filter on the last image (logs/benchmarks)

    @property
    def model(self) -> Sam:
        return self.predictor.model

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> AmgResult:
        """Masks of an (H, W, 3) uint8 RGB image (see :class:`AmgResult`)."""
        orig_size = image.shape[:2]
        self.last_counts = dict.fromkeys(("decoded", "iou", "stability", "edge", "nms"), 0)
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        parts = [self._process_crop(image, box, layer, orig_size) for box, layer in zip(crop_boxes, layer_idxs)]
        low = torch.cat([p["low"] for p in parts])
        iou, stab = torch.cat([p["iou"] for p in parts]), torch.cat([p["stab"] for p in parts])
        boxes, points = torch.cat([p["boxes"] for p in parts]), torch.cat([p["points"] for p in parts])
        crop_of = torch.cat([torch.full((len(p["iou"]),), i, dtype=torch.long) for i, p in enumerate(parts)])
        if len(crop_boxes) > 1 and len(boxes):
            crop_t = torch.tensor(crop_boxes, dtype=torch.float)[crop_of]
            keep = batched_nms(boxes.float(), (1 / box_area(crop_t)).to(boxes.device),
                               torch.zeros(len(boxes), device=boxes.device), iou_threshold=self.crop_nms_thresh)
            low, iou, stab, boxes, points, crop_of = (t[keep.to(t.device)] for t in (low, iou, stab, boxes, points,
                                                                                     crop_of))
        masks = self._final_masks(low, crop_of, parts, crop_boxes, orig_size)
        if self.min_mask_region_area > 0 and len(masks):
            masks, boxes, keep = _remove_small_regions(masks, boxes, self.min_mask_region_area,
                                                       max(self.box_nms_thresh, self.crop_nms_thresh))
            iou, stab, points = iou[keep], stab[keep], points[keep]
        return AmgResult(masks, iou.float(), stab.float(), boxes, points)

    def _encode(self, crop: np.ndarray) -> None:
        dev = self.model.device
        use_bf16 = self.encoder_bf16 and dev.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
        with ctx:
            self.predictor.set_image(crop)
        self.predictor.features = self.predictor.features.float()

    def _chunk(self, crop_size) -> int:
        """Masks per upscaling call that keep the largest intermediate within the memory budget."""
        side = self.model.image_encoder.img_size
        budget = _UPSCALE_BUDGET["cuda" if self.model.device.type == "cuda" else "cpu"]
        return max(1, budget // max(side * side, crop_size[0] * crop_size[1]))

    def _upscale(self, low: torch.Tensor, input_size, crop_size) -> torch.Tensor:
        """(n, h, w) low-res logits -> (n, H, W) float logits at crop size (Sam.postprocess_masks)."""
        return self.model.postprocess_masks(low[:, None], input_size, crop_size)[:, 0]

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, orig_size) -> dict:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        self._encode(crop)
        pred, model, dev = self.predictor, self.model, self.model.device
        input_size = pred.input_size
        points_all = self.point_grids[layer] * np.array(crop_size)[None, ::-1]
        chunk = self._chunk(crop_size)
        lows, ious, stabs, boxes_l, pts = [], [], [], [], []
        dense_pe = model.prompt_encoder.get_dense_pe()
        for s in range(0, len(points_all), self.points_per_batch):
            points = points_all[s:s + self.points_per_batch]
            coords = torch.as_tensor(pred.transform.apply_coords(points, crop_size), device=dev)
            labels = torch.ones(len(coords), dtype=torch.int, device=dev)
            sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
            low, iou = model.mask_decoder(image_embeddings=pred.features, image_pe=dense_pe,
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=True)
            n_out, low_hw = low.shape[1], low.shape[-2:]
            low, iou = low.flatten(0, 1), iou.flatten(0, 1)
            pt = torch.as_tensor(points.repeat(n_out, axis=0))
            self.last_counts["decoded"] += len(iou)
            if self.pred_iou_thresh > 0.0:
                keep = iou > self.pred_iou_thresh
                low, iou, pt = low[keep], iou[keep], pt[keep.cpu()]
            self.last_counts["iou"] += len(iou)
            for c in range(0, len(low), chunk):
                lo, io, p = low[c:c + chunk], iou[c:c + chunk], pt[c:c + chunk]
                up = self._upscale(lo, input_size, crop_size)
                stab = calculate_stability_score(up, model.mask_threshold, self.stability_score_offset)
                if self.stability_score_thresh > 0.0:
                    keep = stab >= self.stability_score_thresh
                    up, lo, io, p, stab = up[keep], lo[keep], io[keep], p[keep.cpu()], stab[keep]
                bx = batched_mask_to_box(up > model.mask_threshold)
                del up
                keep = ~is_box_near_crop_edge(bx, crop_box, [0, 0, orig_size[1], orig_size[0]])
                self.last_counts["stability"] += len(keep)
                self.last_counts["edge"] += int(keep.sum())
                lows.append(lo[keep])
                ious.append(io[keep])
                stabs.append(stab[keep])
                boxes_l.append(bx[keep])
                pts.append(p[keep.cpu()])
        pred.reset_image()
        low = torch.cat(lows) if lows else torch.zeros((0, *low_hw), device=dev)
        iou = torch.cat(ious) if ious else torch.zeros(0, device=dev)
        stab = torch.cat(stabs) if stabs else torch.zeros(0, device=dev)
        boxes = torch.cat(boxes_l) if boxes_l else torch.zeros((0, 4), dtype=torch.long, device=dev)
        points = torch.cat(pts) if pts else torch.zeros((0, 2), dtype=torch.float64)
        keep = batched_nms(boxes.float(), iou, torch.zeros(len(boxes), device=boxes.device),
                           iou_threshold=self.box_nms_thresh)
        self.last_counts["nms"] += len(keep)
        off = torch.tensor([[x0, y0, x0, y0]], device=boxes.device)
        return {"low": low[keep], "iou": iou[keep], "stab": stab[keep], "boxes": boxes[keep] + off,
                "points": points[keep.cpu()] + torch.tensor([[x0, y0]]), "input_size": input_size,
                "crop_size": crop_size}

    def _final_masks(self, low: torch.Tensor, crop_of: torch.Tensor, parts: list[dict], crop_boxes, orig_size):
        h, w = orig_size
        out = torch.zeros((len(low), h, w), dtype=torch.bool, device=self.model.device)
        for ci, part in enumerate(parts):
            idx = (crop_of == ci).nonzero()[:, 0]
            if len(idx) == 0:
                continue
            x0, y0, x1, y1 = crop_boxes[ci]
            chunk = self._chunk(part["crop_size"])
            for c in range(0, len(idx), chunk):
                sel = idx[c:c + chunk].to(low.device)
                up = self._upscale(low[sel], part["input_size"], part["crop_size"])
                out[sel, y0:y1, x0:x1] = up > self.model.mask_threshold
        return out


def _remove_small_regions(masks: torch.Tensor, boxes: torch.Tensor, min_area: int, nms_thresh: float):
    """segment-anything's ``postprocess_small_regions`` (holes, then islands, 8-connectivity, NMS
    preferring unchanged masks) with scipy instead of OpenCV. Returns (masks, boxes, keep index)."""
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    new, scores = [], []
    for m in masks.cpu().numpy():
        changed = False
        for holes in (True, False):
            work = ~m if holes else m
            lab, n = ndimage.label(work, structure=eight)
            sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
            small = np.flatnonzero(sizes < min_area) + 1
            if len(small) == 0:
                continue
            changed = True
            if holes:
                m = m | np.isin(lab, small)
            else:
                big = np.setdiff1d(np.arange(1, n + 1), small)
                m = np.isin(lab, big if len(big) else [int(np.argmax(sizes)) + 1])
        new.append(m)
        scores.append(0.0 if changed else 1.0)
    new_t = torch.as_tensor(np.stack(new), device=masks.device)
    new_boxes = batched_mask_to_box(new_t)
    keep = batched_nms(new_boxes.float(), torch.as_tensor(scores, device=masks.device),
                       torch.zeros(len(new_boxes), device=masks.device), iou_threshold=nms_thresh)
    unchanged = torch.as_tensor(scores, device=masks.device)[keep] == 1.0
    out_boxes = torch.where(unchanged[:, None], boxes[keep.to(boxes.device)], new_boxes[keep].to(boxes.device))
    return new_t[keep], out_boxes, keep.cpu()
