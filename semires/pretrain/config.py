"""Typed configuration of backbone pretraining: the ``pretrain`` section of ``params.yaml``."""

from __future__ import annotations

from pydantic import Field

from semires.config import TrainingRuntime


class PretrainConfig(TrainingRuntime):
    """Pretraining of the vision backbone on a generated RefShapes pool of its own.

    It stands in for LAVT's ImageNet-pretrained Swin: the pool is drawn with its own seed (so no image
    of the RES train/val/test splits is in it), and only its object annotations are used (every
    object segmented by shape category); no expression is read. Burn-in and SemiRES then start from
    these backbone weights (``model.backbone_weights``).
    """

    enabled: bool = Field(True, description="false = no pretraining (the stage writes no weights; a Swin backbone "
                          "loaded from model.vision_path is already pretrained)")
    preset: str = Field("default", description="RefShapes preset the pool is drawn from (image side, objects)")
    num_images: int = Field(2000, ge=8, description="pool images")
    seed: int = Field(1000, description="the pool's generator seed; must differ from data.synth.seed so that the "
                      "pool shares no image with the RES dataset")
    image_size: int = Field(64, ge=32, description="training side, pixels (the burn-in's image_size)")
    steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="images per step")
    lr: float = Field(2e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    poly_power: float = Field(0.9, ge=0, description="lr = peak * (1 - step / total) ** poly_power")
    background_weight: float = Field(0.2, gt=0, description="cross-entropy weight of the background class (objects "
                                     "cover a few % of an image; every category has weight 1)")
    head_channels: int = Field(32, ge=4, description="channels of the category head (discarded after pretraining)")
    val_images: int = Field(100, ge=1, description="pool images held out for the pretext metric (category mIoU)")
    eval_every: int = Field(500, ge=1, description="evaluate the pretext metric every N steps (and at the end)")
    checkpoint_every: int = Field(250, ge=0, description="save last.pt every N steps (0 = at evaluations only)")
    log_every: int = Field(50, ge=1)
