"""Auxiliary category segmentation from the visual stream (not in LAVT).

LAVT starts from an ImageNet-pretrained Swin, which already tells a star from a crescent. The CPU
default's small backbone trains from scratch, and a referring loss teaches it shapes only through
the few expressions where shape alone tells the target from the others: colour and position usually
suffice, so the network learns those first (on RefShapes' val split, "the star" alone failed on 92 %
of expressions while "the red one" failed on 9 %). This head asks the backbone, before language is
fused in, to segment every annotated object of the image by category, which the REFER layout
carries for every annotation (COCO's 80 categories on RefCOCO, 8 shapes on RefShapes). The index
keeps the annotations some ref uses, so an object no expression refers to (6 % of RefShapes'
objects) counts as background here.
"""

from __future__ import annotations

import torch
from torch import nn

from semires.models.resize import resize_bilinear


class CategoryHead(nn.Module):
    """Per-pixel category logits from several backbone stages.

    Each chosen stage is projected by a 1x1 conv, upsampled to the finest chosen stage and summed;
    a ReLU and a 1x1 conv give the logits.

    forward([f_a, f_b, ...]) with f (B, C_s, H_s, W_s), finest first -> (B, num_categories + 1, H_a, W_a);
    class 0 is background, class k the k-th category of the index (:func:`category_lookup`).
    """

    def __init__(self, in_channels: list[int], num_categories: int, channels: int = 32):
        super().__init__()
        if num_categories < 1:
            raise ValueError(f"num_categories must be >= 1, got {num_categories}")
        self.proj = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.out = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, num_categories + 1, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = self.proj[0](feats[0])
        for proj, f in zip(self.proj[1:], feats[1:]):
            x = x + resize_bilinear(proj(f), size)
        return self.out(x)


def category_lookup(cat_ids) -> dict[int, int]:
    """Index category ids (sorted) -> head classes 1..K (0 stays background)."""
    return {int(c): k + 1 for k, c in enumerate(sorted(int(c) for c in cat_ids))}
