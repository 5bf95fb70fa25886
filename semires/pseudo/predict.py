"""Teacher predictions: foreground probabilities and argmax masks for a batch of expressions."""

from __future__ import annotations

import torch

from semires.engine.runtime import autocast
from semires.engine.transforms import foreground_prob, logits_to_masks


@torch.no_grad()
def teacher_predict(model: torch.nn.Module, images: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode without gradients.

    Args:
        images: (B, 3, S, S) float32 normalised, on the model's device.
        input_ids, attention_mask: (B, L) int64 on the model's device.
        dtype: autocast dtype or None.
    Returns:
        (prob (B, S, S) float32 in [0, 1], mask (B, S, S) bool argmax of the logits).
    """
    was_training = model.training
    model.eval()
    with autocast(images.device, dtype):
        logits = model(images, input_ids, attention_mask)
    model.train(was_training)
    logits = logits.float()
    # logits_to_masks: the argmax as the sign of the class difference (an argmax over the class
    # dimension of (B, 2, S, S) took a fifth of a student step on CPU)
    return foreground_prob(logits), logits_to_masks(logits)


@torch.no_grad()
def ref_consensus(model: torch.nn.Module, images: torch.Tensor, ref_input_ids: torch.Tensor,
                  ref_attention_mask: torch.Tensor, ref_valid: torch.Tensor,
                  dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher on every sentence of each sample's ref, averaged: all of them name one object, so
    a pseudo-mask the sentences agree on is more often the referred object than one sentence's.

    Args:
        images: (B, 3, S, S) float32 normalised.
        ref_input_ids, ref_attention_mask: (B, K, L) int64; ref_valid: (B, K) bool (the first is True).
    Returns:
        (prob (B, S, S) float32: the mean foreground probability over the valid sentences,
         mask (B, S, S) bool: prob > 0.5,
         agreement (B,) float32 in [0, 1]: the mean IoU between the valid sentences' argmax masks,
         1 for a ref with one sentence).
    """
    b, k, length = ref_input_ids.shape
    prob, masks = teacher_predict(model, images.repeat_interleave(k, 0), ref_input_ids.reshape(b * k, length),
                                  ref_attention_mask.reshape(b * k, length), dtype)
    prob, masks = prob.view(b, k, *prob.shape[1:]), masks.view(b, k, *masks.shape[1:])
    w = ref_valid.to(prob.dtype)
    mean = (prob * w[:, :, None, None]).sum(1) / w.sum(1).clamp(min=1)[:, None, None]
    flat = masks.flatten(2).float()
    inter = flat @ flat.transpose(1, 2)                                  # (B, K, K)
    area = flat.sum(2)
    union = area[:, :, None] + area[:, None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    pair = w[:, :, None] * w[:, None, :] * (1 - torch.eye(k, dtype=w.dtype, device=w.device))
    n_pairs = pair.sum((1, 2))
    agreement = torch.where(n_pairs > 0, (iou * pair).sum((1, 2)) / n_pairs.clamp(min=1), torch.ones_like(n_pairs))
    return mean, mean > 0.5, agreement


@torch.no_grad()
def ref_probs(model: torch.nn.Module, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              valid: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The teacher's mean foreground probability of R refs per image, over each ref's valid sentences;
    only the valid sentences are run.

    Args:
        images: (B, 3, S, S) float32 normalised.
        input_ids, attention_mask: (B, R, K, L) int64: K sentences of each of R refs per image.
        valid: (B, R, K) bool.
    Returns:
        (B, R, S, S) float32; zeros for a ref with no valid sentence.
    """
    b, r = input_ids.shape[:2]
    size = images.shape[-2:]
    out = torch.zeros(b, r, *size, dtype=torch.float32, device=images.device)
    which = valid.nonzero(as_tuple=True)
    if which[0].numel() == 0:
        return out
    prob, _ = teacher_predict(model, images[which[0]], input_ids[which], attention_mask[which], dtype)
    flat = out.view(b * r, *size)
    flat.index_add_(0, which[0] * r + which[1], prob)
    return out / valid.sum(2).clamp(min=1)[:, :, None, None]


def compete(prob: torch.Tensor, rivals: torch.Tensor, rival_valid: torch.Tensor) -> torch.Tensor:
    """Keep a ref's probability only where no other ref of the image claims the pixel more strongly.

    Args:
        prob: (B, S, S) float, this ref's (mean) foreground probability.
        rivals: (B, R, S, S) float, the other refs' of the same image.
        rival_valid: (B, R) bool, which rivals exist.
    Returns:
        (B, S, S) float: ``prob`` where it is >= every valid rival's, 0 elsewhere (unchanged for an
        image without rivals).
    """
    masked = torch.where(rival_valid[:, :, None, None], rivals, torch.full_like(rivals, -1.0))
    strongest = torch.full_like(prob, -1.0)
    for r in masked.unbind(1):  # element-wise over the few rivals: a reduction over dim 1 is a slow path on CPU
        strongest = torch.maximum(strongest, r)
    return torch.where(prob >= strongest, prob, torch.zeros_like(prob))
