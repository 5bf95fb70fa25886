"""Typed configuration of supervised (burn-in) training: the ``burn_in`` section of ``params.yaml``."""

from __future__ import annotations

import math

from pydantic import Field

from semires.config import Section, TrainingRuntime


class BurnInConfig(TrainingRuntime):
    """Supervised training on the labeled split (SemiRES' burn-in stage; LAVT's recipe).

    Defaults are tuned for the CPU RefShapes benchmark; the paper's GPU setting is noted per field.
    """

    epochs: int = Field(3, ge=1, description="training epochs (LAVT: 40)")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="optimizer steps per epoch; None = one pass over the labeled expressions "
        "(len // global batch). Set it to give small labeled splits a comparable schedule")
    batch_size: int = Field(16, ge=1, description="expressions per step per process (paper: 8 per GPU)")
    image_size: int = Field(64, ge=32, description="square side images and masks are resized to (paper: 480)")
    early_image_size: int | None = Field(
        None, ge=32, description="side the first early_epochs train at (progressive resizing: small images "
        "while the model learns what words mean, image_size for the fine detail); None = image_size throughout. "
        "Validation and the checkpoint always use image_size")
    early_epochs: int = Field(0, ge=0, description="epochs trained at early_image_size (0 = none)")
    lr: float = Field(2e-3, gt=0, description="peak AdamW learning rate (LAVT with Swin-B: 5e-5)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay; never applied to norms, biases, position tables")
    betas: tuple[float, float] = (0.9, 0.999)
    poly_power: float = Field(0.9, ge=0, description="lr = peak * (1 - step / total) ** poly_power")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps before the poly decay")
    class_weights: tuple[float, float] = Field((0.9, 1.1), description="cross-entropy weights of background, object")
    dice_weight: float = Field(1.0, ge=0.0, description="weight of a per-sample soft Dice term added to the "
                               "cross-entropy (0 = LAVT's CE only, the paper's setting). CE averages over pixels, "
                               "so small objects weigh little; Dice weighs every expression equally "
                               "(docs/model.md)")
    category_weight: float = Field(0.0, ge=0.0, description="weight of an auxiliary cross-entropy that segments "
                                   "every annotated object of a labeled image by category from the backbone's "
                                   "pre-fusion features (needs model.categories; 0 = off, the paper's setting). It "
                                   "teaches a from-scratch backbone shapes; where it helps and where it hurts: "
                                   "docs/model.md")
    grad_clip: float | None = Field(None, gt=0, description="max gradient L2 norm; None = no clipping")
    seed: int = 0
    num_workers: int = Field(0, ge=0, description="DataLoader workers per process (0 = load in the main process)")
    eval_every: int = Field(1, ge=1, description="evaluate on the val split every N epochs (and after the last)")
    val_split: str = Field("val", description="split that picks the best checkpoint (by oIoU)")
    val_max_expressions: int | None = Field(None, ge=1, description="evaluate on an evenly spaced subset of "
                                               "this many val expressions during training; None = all")
    eval_batch_size: int = Field(32, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="also save last.pt every N steps (0 = at epoch ends only)")
    log_every: int = Field(20, ge=1, description="log the training loss every N steps")
    channels_last: bool = Field(False, description="keep conv weights and image batches channels-last (NHWC), "
                                "oneDNN's preferred layout on the CPU; results differ from NCHW only by float "
                                "rounding")
    cache_images: bool = Field(True, description="keep resized images and masks in memory after the first read")
    overlays: int = Field(12, ge=0, description="val predictions drawn into overlays.png at the end")


class SupervisedConfig(Section):
    """The ``supervised`` stage: the step-matched supervised-only baseline.

    The burn-in is the paper's baseline, but a semi-supervised run trains longer than it; this run
    trains on the same labeled images with the burn-in's settings for as many optimizer steps as
    burn-in plus student, so that the student's gain over it cannot come from training longer.
    """

    enabled: bool = Field(True, description="train the step-matched baseline (false: the stage writes only a "
                                            "note and the report leaves its column out)")
    steps: int | None = Field(None, ge=1, description="its optimizer steps; None = burn-in steps (burn_in.epochs x "
                              "burn_in.steps_per_epoch) + semi.steps, which needs both set")


def step_matched(burn: BurnInConfig, steps: int) -> BurnInConfig:
    """``burn`` run for at least ``steps`` optimizer steps: the same steps per epoch, learning-rate schedule
    shape and evaluation spacing per step, ``ceil(steps / steps_per_epoch)`` epochs.

    Raises ValueError when ``burn.steps_per_epoch`` is None (an epoch's length then depends on the data).
    """
    if burn.steps_per_epoch is None:
        raise ValueError("a step-matched run needs burn_in.steps_per_epoch (or supervised.steps and "
                         "burn_in.steps_per_epoch) set")
    epochs = max(burn.epochs, math.ceil(steps / burn.steps_per_epoch))
    return burn.model_copy(update={"epochs": epochs, "eval_every": max(1, burn.eval_every * epochs // burn.epochs)})


def burn_in_steps(burn: BurnInConfig) -> int:
    """The burn-in's optimizer steps (ValueError when they depend on the data: steps_per_epoch None)."""
    if burn.steps_per_epoch is None:
        raise ValueError("the burn-in's step count needs burn_in.steps_per_epoch set")
    return burn.epochs * burn.steps_per_epoch
