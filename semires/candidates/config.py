"""Typed configuration of the ``candidates`` stage (``params.yaml`` section ``candidates``).

Read with ``semires.config.section(params, "candidates", CandidatesConfig)``. Every SAM
automatic-mask-generator (AMG) setting defaults to the published SemiRES run (ViT-H, 32x32
points, pred IoU 0.88, stability 0.95, box NMS 0.7, no crops, no small-region removal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from semires.config import Section


class SamConfig(Section):
    """Segment Anything "everything" masks (``segment-anything``'s automatic mask generator)."""

    model: Literal["vit_h", "vit_l", "vit_b", "tiny"] = Field(
        "vit_h", description="SAM backbone; 'tiny' is a 256 px random-weight SAM for tests and CPU benchmarks only")
    checkpoint: str | None = Field(
        None, description="local path of the official SAM checkpoint (.pth or .safetensors) for vit_h/vit_l/vit_b")
    implementation: Literal["fast", "vanilla"] = Field(
        "fast", description="'fast': semires' on-device post-processing (same masks); "
                            "'vanilla': segment_anything.SamAutomaticMaskGenerator as is")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="'auto' picks CUDA when present")
    encoder_bf16: bool = Field(
        False, description="run the image encoder under bf16 autocast on CUDA (faster; check agreement "
                           "with benchmarks/candidates_bench.py before enabling)")
    points_per_side: int = Field(32, ge=1, description="point prompts per image side (points_per_side^2 prompts)")
    points_per_batch: int | None = Field(
        None, ge=1, description="prompts decoded at once; None: 64 on CPU (the AMG default), 256 on CUDA "
                             "(decoder memory grows linearly with it; 1024 suits 80 GB cards)")
    pred_iou_thresh: float = Field(0.88, ge=0, le=1, description="keep masks whose predicted IoU is > this")
    stability_score_thresh: float = Field(0.95, ge=0, le=1, description="keep masks whose stability score is >= this")
    stability_score_offset: float = Field(1.0, description="logit offset for the stability score")
    box_nms_thresh: float = Field(0.7, ge=0, le=1, description="box IoU above which a duplicate mask is dropped")
    crop_n_layers: int = Field(0, ge=0, description="extra crop layers (0: whole image only)")
    crop_nms_thresh: float = Field(0.7, ge=0, le=1, description="box NMS between crops")
    crop_overlap_ratio: float = Field(512 / 1500, ge=0, lt=1, description="crop overlap as a fraction of the side")
    crop_n_points_downscale_factor: int = Field(1, ge=1, description="points per side shrink by this per crop layer")
    min_mask_region_area: int = Field(0, ge=0, description="remove holes/islands smaller than this (pixels); 0: off")
    seed: int = Field(0, description="weight seed of the 'tiny' model (ignored for real checkpoints)")


class EmbeddedConfig(Section):
    """The weight-free stand-in for SAM: a fine graph over-segmentation, several region-merging
    hierarchies, contrast filtering, shape splitting and mask NMS (see :mod:`semires.candidates.embedded`).

    It is NOT SAM; it exists so the pipeline runs end to end on machines without a SAM checkpoint.
    Defaults are tuned on RefShapes (``benchmarks/candidates_bench.py`` reports the recall).
    """

    base_scale: float = Field(20.0, gt=0, description="felzenszwalb 'scale' of the initial over-segmentation")
    base_min_size_frac: float = Field(
        0.0006, ge=0, description="felzenszwalb min region size as a fraction of the image area")
    cost_sigma: float = Field(1.0, ge=0, description="Gaussian smoothing (pixels) of the Lab image that merge costs read")
    criteria: list[Literal["boundary", "color", "mix", "boundary_size"]] = Field(
        ["color", "mix"],
        description="merge orders, one hierarchy each: 'boundary' mean contrast across the shared boundary, "
                    "'color' distance of region mean colours, 'mix' their average, 'boundary_size' boundary "
                    "contrast damped for small regions (on RefShapes 'boundary' and 'boundary_size' add no recall)")
    min_contrast: float = Field(
        5.0, ge=0, description="keep a region only if its contrast to its surroundings when it is merged away "
                               "(Lab delta E) is at least this")
    split_contrast: float = Field(
        10.0, ge=0, description="regions at least this contrasted are also split at narrow necks (touching "
                                "objects of one colour); set above 200 to disable")
    split_max_regions: int = Field(15, ge=0, description="split at most this many regions (the most contrasted)")
    split_h: float = Field(0.25, gt=0, description="h-maxima depth (pixels) of the distance-transform split markers")
    split_sigma: float = Field(1.0, ge=0, description="smoothing (pixels) of the distance transform before splitting")
    split_max_parts: int = Field(8, ge=2, description="also offer adjacent pairs and complements up to this many parts")
    min_area_frac: float = Field(0.0018, ge=0, description="drop candidates smaller than this fraction of the image")
    max_area_frac: float = Field(0.9, gt=0, le=1, description="drop candidates larger than this fraction")
    nms_iou: float = Field(0.9, ge=0, le=1, description="mask IoU above which a lower-scored duplicate is dropped")
    max_candidates: int = Field(300, ge=1, description="keep at most this many candidates per image (best scores)")


class CandidatesConfig(Section):
    """The ``candidates`` stage: one "everything" generation per image, stored sharded as COCO RLE."""

    # the choices are the names in semires.candidates.registry (a test keeps the two equal)
    generator: Literal["embedded", "sam"] = Field(
        "embedded", description="registered generator: 'sam' needs a SAM checkpoint (GPU advised); 'embedded' is "
                                "the weight-free stand-in")
    num_shards: int = Field(1, ge=1, description="image ids are split into this many shards (one task each)")
    allow_failures: bool = Field(
        False, description="list unreadable images in failures.json and carry on instead of failing the shard")
    out_dir: str = Field("data/candidates", description="folder holding shards and manifest.json")
    split: str | None = Field(None, description="generate for images of this split only (None: every image)")
    sam: SamConfig = SamConfig()
    embedded: EmbeddedConfig = EmbeddedConfig()
