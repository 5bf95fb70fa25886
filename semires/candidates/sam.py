"""SAM "everything" candidates through ``segment-anything`` (official weights from a local path).

:class:`SamGenerator` runs either segment-anything's own ``SamAutomaticMaskGenerator``
(``implementation: vanilla``) or :class:`~semires.candidates.fast_amg.FastAutomaticMaskGenerator`
(``fast``, the default: same masks, post-processing on the device). CUDA is used when present.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from semires.candidates.base import CandidateGenerator, Candidates, check_image
from semires.candidates.config import SamConfig
from semires.candidates.sam_models import load_sam, pick_device
from semires.errors import SemiresError


def amg_kwargs(cfg: SamConfig, device: torch.device) -> dict:
    """Keyword arguments shared by the vanilla and the fast AMG, from the config."""
    ppb = cfg.points_per_batch or (256 if device.type == "cuda" else 64)
    keys = ("points_per_side", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset",
            "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio",
            "crop_n_points_downscale_factor", "min_mask_region_area")
    return {"points_per_batch": ppb, **{k: getattr(cfg, k) for k in keys}}


class SamGenerator(CandidateGenerator):
    """SAM automatic masks as :class:`Candidates` (scores: SAM's predicted IoU, float32).

    ``model`` overrides building the network from ``cfg`` (benchmarks pass random-weight
    architectures); otherwise :func:`~semires.candidates.sam_models.load_sam` reads the checkpoint.
    """

    def __init__(self, cfg: SamConfig | None = None, model=None):
        self.cfg = cfg = cfg or SamConfig()
        self.device = pick_device(cfg.device)
        sam = (model if model is not None else load_sam(cfg.model, cfg.checkpoint, cfg.seed)).to(self.device)
        kw = amg_kwargs(cfg, self.device)
        if cfg.implementation == "fast":
            from semires.candidates.fast_amg import FastAutomaticMaskGenerator

            self.amg = FastAutomaticMaskGenerator(sam, encoder_bf16=cfg.encoder_bf16, **kw)
        else:
            from segment_anything import SamAutomaticMaskGenerator

            if cfg.min_mask_region_area > 0 and importlib.util.find_spec("cv2") is None:
                raise SemiresError("candidates.sam.min_mask_region_area > 0 with implementation 'vanilla' needs OpenCV",
                                   None, "use implementation: fast (it does this with scipy) or install "
                                         "opencv-python-headless")

            self.amg = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **kw)
        self.name = f"sam-{cfg.model}-{cfg.implementation}"

    def generate(self, image: np.ndarray) -> Candidates:
        """Candidates of an (H, W, 3) uint8 RGB image, ordered by the AMG's NMS (descending IoU)."""
        image = check_image(image)
        h, w = image.shape[:2]
        if self.cfg.implementation == "fast":
            res = self.amg.generate(image)
            return Candidates(res.masks.cpu().numpy(), res.iou_preds.cpu().numpy().astype(np.float32))
        anns = self.amg.generate(image)
        masks = np.stack([a["segmentation"] for a in anns]) if anns else np.zeros((0, h, w), bool)
        return Candidates(masks.astype(bool), np.array([a["predicted_iou"] for a in anns], dtype=np.float32))

    def describe(self) -> dict:
        """Settings that decide the masks. The checkpoint is named by file name and size, not path, and the
        device is left out, so shards made on different machines merge."""
        d = {"name": self.name, **self.cfg.model_dump(exclude={"device", "checkpoint"})}
        if self.cfg.checkpoint:
            p = Path(self.cfg.checkpoint)
            d["checkpoint"] = {"file": p.name, "bytes": p.stat().st_size if p.is_file() else None}
        return d
