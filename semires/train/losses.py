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


def cell_fractions(target: torch.Tensor, size: tuple[int, int],
                   ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell of a coarser grid, the fractions of its pixels that are object and labelled background.

    Args:
        target: (B, H, W) int64 in {0, 1} or ``ignore_index``.
        size: (h, w) of the grid; cells are the bins of ``adaptive_avg_pool2d`` (exact 4 x 4 blocks for
            stride-4 logits of an image whose sides divide by 4).
    Returns:
        (fg, bg): two (B, h, w) float32 in [0, 1]; ``fg + bg`` < 1 where a cell holds unlabelled pixels.
    """
    both = torch.stack([target == 1, target == 0], dim=1).float()
    fg, bg = F.adaptive_avg_pool2d(both, size).unbind(1)
    return fg, bg


def grid_supervised_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: Sequence[float] = (0.9, 1.1),
                         dice_weight: float = 0.0, eps: float = 1.0) -> torch.Tensor:
    """:func:`supervised_loss` computed at the logit grid instead of the input size.

    Each logit cell stands for the pixels it covers, as if upsampled by nearest neighbour: the
    class-weighted cross-entropy is ``-sum(w1 fg log p1 + w0 bg log p0) / sum(w1 fg + w0 bg)`` over cells
    and the Dice sums weigh each cell by its pixel count, with ``fg``/``bg`` from :func:`cell_fractions`.
    That is exactly the input-size loss of those nearest-upsampled logits (for cells of equal size), it
    is minimised by p1 = the cell's (weighted) object fraction, and it skips the upsampling and scores
    16x fewer positions at stride 4. Evaluation still upsamples bilinearly.

    Args:
        logits: (B, 2, h, w) float at the model's output stride (``LAVT(..., upsample=False)``).
        target: (B, H, W) int64 in {0, 1} or ``ignore_index``, at input size.
    Returns:
        scalar >= 0.
    """
    fg, bg = cell_fractions(target, tuple(logits.shape[-2:]))
    logp = logits.float().log_softmax(dim=1)
    w0, w1 = (float(w) for w in class_weights)
    weight = w1 * fg + w0 * bg
    ce = -(w1 * fg * logp[:, 1] + w0 * bg * logp[:, 0]).sum() / weight.sum().clamp_min(1e-12)
    if not dice_weight:
        return ce
    area = target.shape[-2] * target.shape[-1] / (fg.shape[-2] * fg.shape[-1])  # pixels per cell: eps in pixels
    prob = logp[:, 1].exp()
    inter = area * (prob * fg).flatten(1).sum(1)
    total = area * ((prob * (fg + bg)).flatten(1).sum(1) + fg.flatten(1).sum(1))
    return ce + dice_weight * (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


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
