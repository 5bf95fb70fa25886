"""Directional context: what lies left of, right of, above and below each position (not in LAVT).

Superlatives ("the leftmost star", "the largest red one") and relations ("the cross left of the
ring") compare the target with the other objects of the image. A pixel's convolutional
neighbourhood sees its own object; pixel-word attention tells it whether it *is* a star, not
whether another star lies further left. This block gives every position that comparison as a
feature: after language is fused in, a 1x1 conv picks ``hidden`` channels ("is a star here?",
"how large is the object here?"), and for each channel it takes the maximum over everything strictly
to the left of the position (over all rows), strictly to the right, above and below, plus the
maximum over the whole map. "Leftmost star" is then "a star here, and none to the left". A
1x1 conv maps these back and adds them to the features, starting at zero so training starts from
the plain model. It costs O(H W) per channel, nothing next to the convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def exclusive_cummax(x: torch.Tensor, dim: int, reverse: bool = False, fill: float = 0.0) -> torch.Tensor:
    """Running maximum of the entries strictly before each index along ``dim`` (strictly after
    with ``reverse``); the first (last) index, which has none, gets ``fill``.

    x: any float tensor; returns the same shape and dtype.
    """
    if reverse:
        x = x.flip(dim)
    run = x.cummax(dim=dim).values
    first = torch.full_like(run.narrow(dim, 0, 1), fill)
    out = torch.cat([first, run.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)
    return out.flip(dim) if reverse else out


class DirectionalContext(nn.Module):
    """Residual block: ``x + proj([left, right, above, below, global] max-pools of conv1x1(x))``.

    forward(x (B, C, H, W)) -> (B, C, H, W). ``left[b, k, y, x]`` is the maximum of channel k over
    all positions with a column < x (any row); right, above (row < y) and below alike; global is
    the maximum over the map.
    """

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.pick = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(5 * hidden, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pick[0].out_channels
        f = self.pick(x)                                   # (B, k, H, W), >= 0, so 0 = "nothing there"
        cols = f.amax(dim=2, keepdim=True)                 # (B, k, 1, W): the most of k in each column
        rows = f.amax(dim=3, keepdim=True)                 # (B, k, H, 1)
        most = cols.amax(dim=3, keepdim=True)              # (B, k, 1, 1)
        horizontal = torch.cat([exclusive_cummax(cols, 3), exclusive_cummax(cols, 3, reverse=True)], dim=1)
        vertical = torch.cat([exclusive_cummax(rows, 2), exclusive_cummax(rows, 2, reverse=True)], dim=1)
        # proj is linear: project each pooled map at its own broadcastable shape and add them. The
        # same function as proj over the five maps expanded to (B, 5k, H, W), at a fraction of the
        # cost (these maps are small, and on a CPU every full-size tensor costs)
        w = self.proj.weight
        across = F.conv2d(horizontal, w[:, :2 * k]) + F.conv2d(most, w[:, 4 * k:], self.proj.bias)  # (B, C, 1, W)
        down = F.conv2d(vertical, w[:, 2 * k:4 * k])                                                # (B, C, H, 1)
        return x + (across + down)
