"""LAVT's segmentation decoder: top-down, upsample-and-concatenate, to 2-class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegDecoder(nn.Module):
    """Fuse multi-scale features from coarse to fine.

    forward([f1, ..., fS]) with f_i (B, C_i, H_i, W_i), finest first -> (B, num_classes, H_1, W_1).
    """

    def __init__(self, in_channels: list[int], channels: int, num_classes: int = 2):
        super().__init__()
        top = in_channels[-1]
        self.blocks = nn.ModuleList()
        for c in reversed(in_channels[:-1]):
            self.blocks.append(nn.Sequential(conv_bn_relu(top + c, channels), conv_bn_relu(channels, channels)))
            top = channels
        self.classifier = nn.Conv2d(top, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.classifier(x)
