"""Typed configuration of semi-supervised student training (the ``semi`` section of ``params.yaml``).

Defaults follow the published SemiRES scripts where they give a value: the supervised weight per
refinement strategy, CE without Dice, class weights [0.9, 1.1], equal labeled / unlabeled batches,
the burn-in's learning rate, the colour-jitter ranges (hue 0 here), blur relative to the image side,
student-only noise. The EMA momentum follows the run length (``ema_window``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from semires.config import TrainingRuntime


class SemiConfig(TrainingRuntime):
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
    sup_weight: float | None = Field(None, ge=0, description="weight of the supervised loss; None = the published "
                                     "script's for the refine strategy (SUP_WEIGHT: iom 10, cpi 1; none as iom)")
    unsup_lambda: float = Field(1.0, ge=0, description="weight of the unsupervised loss (paper: 1)")
    class_weights: tuple[float, float] = Field((0.9, 1.1), description="supervised CE weights (background, object)")
    dice_weight: float = Field(0.0, ge=0, description="soft Dice term added to the supervised CE (0 = the paper's CE "
                               "only)")
    unsup_dice_weight: float = Field(0.0, ge=0, description="soft Dice term added to the unsupervised CE (0 = the "
                                     "paper's CE only); Dice weighs every expression equally where CE averages pixels")
    unsup_class_weights: tuple[float, float] = Field((0.9, 1.1), description="CE weights on pseudo-labels")
    min_confidence: float = Field(0.0, ge=0, le=1, description="online mode: train on an unlabeled sample only if "
                                  "the teacher's mean foreground probability over its pseudo-mask is >= this; "
                                  "0 = every sample (the paper). Not in SemiRES: a pseudo-label filter in the "
                                  "manner of FixMatch's threshold, against pseudo-masks on the wrong object")
    ref_consensus: bool = Field(False, description="online mode: the teacher predicts on every sentence of the "
                                "sample's ref (up to ref_sentences) and its pseudo-label is their mean probability "
                                "> 0.5. Not in SemiRES: the sentences of one ref name one object, so averaging over "
                                "them counters pseudo-masks on the wrong object (no mask is read)")
    ref_sentences: int = Field(3, ge=2, description="with ref_consensus: sentences of a ref the teacher reads")
    min_agreement: float = Field(0.0, ge=0, le=1, description="with ref_consensus: train on a sample only if its "
                                 "ref's sentences agree (mean pairwise IoU of the teacher's masks >= this); 0 = all")
    ref_competition: bool = Field(False, description="online mode, with ref_consensus: the teacher also reads the "
                                  "other refs of the sample's image (up to competing_refs, ref_sentences each), and "
                                  "the pseudo-label keeps only the pixels where this ref's mean probability is at "
                                  "least every other ref's. Not in SemiRES: the refs of one image name different "
                                  "objects (RefCOCO's refs are one per annotated object), so a pixel another ref "
                                  "claims more strongly is not this ref's; counters pseudo-masks on another ref's "
                                  "object (no mask is read)")
    competing_refs: int = Field(4, ge=1, description="with ref_competition: other refs of the image the teacher reads "
                                "(the first ones by ref id)")
    ema_momentum: float | None = Field(None, ge=0, le=1, description="teacher <- m teacher + (1 - m) student, per "
                                       "step; None = 1 - 1 / (ema_window * total steps)")
    ema_window: float = Field(0.1, gt=0, le=1, description="with ema_momentum None: the teacher averages the student "
                              "over about this fraction of the run (the time constant of the EMA), so it leaves the "
                              "burn-in weights behind (to exp(-1 / ema_window) of them) whatever the run length; "
                              "the paper's 0.9996 is this rule for a 25,000-step run")
    lr: float | None = Field(None, gt=0, description="peak AdamW learning rate of the student; None = the burn-in's "
                             "(the published scripts use one rate for both)")
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    poly_power: float = Field(0.9, ge=0, description="lr = peak * (1 - step / total) ** poly_power")
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="max gradient L2 norm; None = no clipping")
    # student-only noise (the teacher predicts in eval mode, without it)
    student_drop_path: float = Field(0.1, ge=0, lt=1, description="stochastic depth on the student's residual "
                                     "blocks (conv backbone; the published Swin student: 0.3)")
    student_word_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the student's word features (the "
                                        "published student's BERT trains with dropout 0.1)")
    # views
    blur_p: float = Field(0.5, ge=0, le=1, description="weak view: Gaussian blur probability")
    blur_sigma: tuple[float, float] = Field((0.1 / 480, 2.0 / 480), description="blur sigma range as a fraction of "
                                            "the image side (the published 0.1-2 px at 480 px)")
    jitter_p: float = Field(1.0, ge=0, le=1, description="strong view: colour jitter probability (1 = the strong "
                            "view always differs from the weak one)")
    jitter_brightness: float = Field(0.25, ge=0, description="brightness factor drawn from [1 - s, 1 + s] (published: "
                                     "0.75-1.25)")
    jitter_contrast: float = Field(0.25, ge=0, description="contrast factor range, as brightness")
    jitter_saturation: float = Field(0.25, ge=0, description="saturation factor range, as brightness")
    jitter_hue: float = Field(0.0, ge=0, le=0.5, description="0: hue shifts would change colour words' referents "
                              "(the published script shifts hue by up to 0.25)")
    # bookkeeping
    seed: int = 0
    eval_every: int = Field(250, ge=1, description="evaluate the teacher on val every N steps (and at the end)")
    val_split: str = Field("val", description="split that picks the kept teacher (by oIoU)")
    val_max_expressions: int | None = Field(None, ge=1, description="evenly spaced val subset during training")
    eval_batch_size: int = Field(32, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="also save last.pt every N steps (0 = at evaluations only)")
    log_every: int = Field(20, ge=1)
    num_workers: int = Field(0, ge=0, description="DataLoader workers per loader")
    cache_images: bool = Field(True, description="keep resized images and masks in memory")
    candidate_cache_mb: float = Field(1024.0, gt=0, description="MiB of decoded candidate stacks the store keeps "
                                      "(LRU, online mode): with candidate_atom_cache, what bounds the student's "
                                      "memory on a large dataset; never changes a result")
    candidate_atom_cache: int = Field(2048, ge=1, description="images whose candidate atoms stay built (LRU, about "
                                      "image_size^2 x 4 bytes each); never changes a result")
    overlays: int = Field(12, ge=0, description="val predictions of the kept teacher drawn into overlays")

    @model_validator(mode="after")
    def _competition_needs_consensus(self) -> SemiConfig:
        if self.ref_competition and not self.ref_consensus:
            raise ValueError("semi.ref_competition compares the refs' mean probabilities: set semi.ref_consensus: true")
        return self

    @property
    def unlabeled_batch(self) -> int:
        return self.unlabeled_batch_size or self.batch_size

    def sup_weight_for(self, strategy: str) -> float:
        """The supervised loss weight for refine strategy ``strategy`` (``sup_weight`` when set)."""
        if self.sup_weight is not None:
            return self.sup_weight
        if strategy not in SUP_WEIGHT:
            raise ValueError(f"no published supervised weight for strategy {strategy!r}; set semi.sup_weight")
        return SUP_WEIGHT[strategy]

    def momentum_for(self, total_steps: int) -> float:
        """The EMA momentum of a run of ``total_steps`` (``ema_momentum`` when set)."""
        if self.ema_momentum is not None:
            return self.ema_momentum
        return max(0.0, 1.0 - 1.0 / max(1.0, self.ema_window * total_steps))


# the published scripts' supervised loss weight per refinement strategy (the unsupervised one is 1):
# IOM's script weighs the labeled CE 10x, CPI's 1x; the plain mean teacher and soft_iom (not in SemiRES) take IOM's
SUP_WEIGHT: dict[str, float] = {"none": 10.0, "iom": 10.0, "cpi": 1.0, "soft_iom": 10.0}
