"""Segmentation loss and the divergence guard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from semires.errors import TrainingDiverged

IGNORE_INDEX = 255


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: Sequence[float] = (0.9, 1.1),
                      pixel_weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Class-weighted pixel cross-entropy (LAVT: weights [0.9, 1.1] for background, object).

    Args:
        logits: (B, 2, H, W) float (any dtype; computed in float32).
        target: (B, H, W) int64 in {0, 1}, or ``ignore_index`` for pixels without a label.
        class_weights: per-class weights (2,).
        pixel_weight: optional (B, H, W) float >= 0, e.g. SemiRES' pixel-wise adjustment weights.
    Returns:
        scalar: ``sum(w_c[t] * w_p * ce) / sum(w_c[t])`` over labelled pixels; without ``pixel_weight``
        this equals ``F.cross_entropy(..., weight=class_weights)``. 0 when no pixel is labelled.
    """
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
    if pixel_weight is None:
        valid = target != ignore_index
        if not bool(valid.any()):
            return logits.float().sum() * 0.0
        return F.cross_entropy(logits.float(), target, weight=w, ignore_index=ignore_index)
    ce = F.cross_entropy(logits.float(), target, weight=w, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    denom = w[target.clamp(0, len(w) - 1)][valid].sum()
    return (ce * pixel_weight.float()).sum() / denom.clamp_min(1e-12)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
              eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of the object class, per sample, averaged over the batch.

    Pixel cross-entropy is an average over pixels, so a referred object that covers 2 % of the
    image contributes 2 % of the signal; Dice scores each sample's mask as a whole, so small
    objects count as much as large ones (it is not in LAVT; ``dice_weight`` 0 turns it off).

    Args:
        logits: (B, 2, H, W) float; target: (B, H, W) int64 in {0, 1} or ``ignore_index``.
    Returns:
        scalar in [0, 1): mean over samples of ``1 - (2 |p t| + eps) / (|p| + |t| + eps)``,
        ``p`` = foreground probability over the labelled pixels.
    """
    valid = (target != ignore_index).float()
    prob = logits.float().softmax(dim=1)[:, 1] * valid
    tgt = (target == 1).float()
    inter = (prob * tgt).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + tgt.flatten(1).sum(1)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def supervised_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: Sequence[float] = (0.9, 1.1),
                    dice_weight: float = 0.0) -> torch.Tensor:
    """The loss on labeled expressions (burn-in, and the supervised term of SemiRES):
    :func:`segmentation_loss` + ``dice_weight`` x :func:`dice_loss`; shapes as there."""
    loss = segmentation_loss(logits, target, class_weights)
    if dice_weight:
        loss = loss + dice_weight * dice_loss(logits, target)
    return loss


def category_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the auxiliary category head (:class:`~semires.models.category_head.CategoryHead`).

    Args:
        logits: (B, K + 1, h, w) float at the head's stride.
        target: (B, H, W) int64 in [0, K] at input size; nearest-downsampled to (h, w), so a pixel
            takes the category found at its cell's corner, as the head's receptive field does.
    Returns:
        scalar: pixel cross-entropy averaged over the batch.
    """
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
    return F.cross_entropy(logits.float(), target)


def check_finite(loss: torch.Tensor, step: int, checkpoint: str | Path | None = None) -> None:
    """Raise :class:`TrainingDiverged` when ``loss`` is NaN or infinite (nothing is saved after it)."""
    value = float(loss.detach())
    if not math.isfinite(value):
        where = f"the last good checkpoint {checkpoint} is kept" if checkpoint else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training diverged: loss is {value} at step {step}; {where}", checkpoint,
            "lower the learning rate (burn_in.lr), set burn_in.grad_clip, or check the labels; rerun to resume "
            "from last.pt")
