"""Teacher predictions: foreground probabilities and argmax masks for a batch of expressions."""

from __future__ import annotations

import torch

from semires.train.runtime import autocast
from semires.train.transforms import foreground_prob


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
    return foreground_prob(logits), logits.argmax(dim=1).bool()
