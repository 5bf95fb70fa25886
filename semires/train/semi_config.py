"""Typed configuration of semi-supervised student training (the ``semi`` section of ``params.yaml``).

Defaults follow SemiRES where the paper gives a value (loss 10 x supervised + 1 x unsupervised,
EMA momentum 0.9996 per step, class weights [0.9, 1.1], equal labeled / unlabeled batches).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from semires.config import Section


class SemiConfig(Section):
    """Mean-teacher training of the student from the burn-in checkpoint.

    mode:
      - ``online`` (the paper): the EMA teacher predicts on the weak view every step, its
        pseudo-masks are refined with SAM candidates on the fly (``refine`` section), and the
        student learns them on the strong view.
      - ``self_training``: the student learns the labels stored by the offline ``pseudo_label``
        and ``refine`` stages (fixed targets); the EMA teacher is still kept and selected.
    """

    mode: Literal["online", "self_training"] = Field("online", description="online | self_training")
    steps: int = Field(2000, ge=1, description="optimizer steps (ignored when epochs is set)")
    epochs: float | None = Field(None, gt=0, description="passes over the unlabeled expressions; sets steps")
    batch_size: int = Field(8, ge=1, description="labeled expressions per step (paper: 8 per GPU)")
    unlabeled_batch_size: int | None = Field(None, ge=1, description="unlabeled per step; None = batch_size (paper)")
    image_size: int | None = Field(None, ge=32, description="None = the burn-in checkpoint's training size")
    sup_weight: float = Field(10.0, ge=0, description="weight of the supervised loss (paper: 10)")
    unsup_lambda: float = Field(1.0, ge=0, description="weight of the unsupervised loss (paper: 1)")
    class_weights: tuple[float, float] = Field((0.9, 1.1), description="supervised CE weights (background, object)")
    dice_weight: float = Field(1.0, ge=0, description="soft Dice term added to the supervised CE, as in burn_in "
                               "(0 = the paper's CE only); the unsupervised loss stays as the paper's")
    unsup_class_weights: tuple[float, float] = Field((0.9, 1.1), description="CE weights on pseudo-labels")
    min_confidence: float = Field(0.0, ge=0, le=1, description="online mode: train on an unlabeled sample only if "
                                  "the teacher's mean foreground probability over its pseudo-mask is >= this; "
                                  "0 = every sample (the paper). Not in SemiRES: a pseudo-label filter in the "
                                  "manner of FixMatch's threshold, against pseudo-masks on the wrong object")
    ema_momentum: float = Field(0.9996, ge=0, le=1, description="teacher <- m teacher + (1 - m) student, per step")
    lr: float = Field(5e-4, gt=0, description="peak AdamW learning rate of the student")
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    poly_power: float = Field(0.9, ge=0, description="lr = peak * (1 - step / total) ** poly_power")
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="max gradient L2 norm; None = no clipping")
    # views
    blur_p: float = Field(0.5, ge=0, le=1, description="weak view: Gaussian blur probability")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="blur sigma range, pixels")
    jitter_p: float = Field(0.5, ge=0, le=1, description="strong view: colour jitter probability")
    jitter_brightness: float = Field(0.4, ge=0)
    jitter_contrast: float = Field(0.4, ge=0)
    jitter_saturation: float = Field(0.4, ge=0)
    jitter_hue: float = Field(0.0, ge=0, le=0.5, description="0: hue shifts would change colour words' referents")
    # bookkeeping
    seed: int = 0
    eval_every: int = Field(250, ge=1, description="evaluate the teacher on val every N steps (and at the end)")
    val_split: str = Field("val", description="split that picks the kept teacher (by oIoU)")
    val_max_expressions: int | None = Field(None, ge=1, description="evenly spaced val subset during training")
    eval_batch_size: int = Field(32, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="also save last.pt every N steps (0 = at evaluations only)")
    log_every: int = Field(20, ge=1)
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast: auto = on CUDA only")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda ...")
    threads: int | None = Field(None, ge=1, description="torch intra-op CPU threads; None = torch's default")
    deterministic: bool = Field(True, description="deterministic kernels (CPU runs resume bit-exactly)")
    num_workers: int = Field(0, ge=0, description="DataLoader workers per loader")
    cache_images: bool = Field(True, description="keep resized images and masks in memory")
    overlays: int = Field(12, ge=0, description="val predictions of the kept teacher drawn into overlays")

    @property
    def unlabeled_batch(self) -> int:
        return self.unlabeled_batch_size or self.batch_size
