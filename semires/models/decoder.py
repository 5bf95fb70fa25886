"""LAVT's segmentation decoder: top-down, upsample-and-concatenate, to 2-class logits.

LAVT predicts at stride 4 and upsamples. At small input sizes that caps the mask quality (at
64 px a stride-4 logit map is 16 x 16: a perfect one scores about 64 mIoU on RefShapes' val refs,
against 87 at stride 2 and 96 at stride 1; ``benchmarks/stride_ceiling.py``), so the decoder can
end with a :class:`DetailHead` that brings in shallow image features at a finer stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semires.models.resize import resize_bilinear


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DetailHead(nn.Module):
    """Refine stride-4 logits with a shallow image branch at a finer stride (a residual correction).

    The image branch (two 3x3 convs, the first with stride ``stride``) sees only colour and
    edges; which object is meant comes from the language-aware decoder features. Both meet at
    the finer stride, and one 3x3 conv + 1x1 predicts a correction that is added to the
    upsampled coarse logits. The correction starts at zero, so training starts from plain LAVT
    and the branch only has to learn where the boundary is (a head that replaced the coarse
    logits outright trained far slower: 16 vs 31 val mIoU after 3 epochs on RefShapes).

    forward(decoded (B, Cd, H/4, W/4), coarse (B, K, H/4, W/4), images (B, 3, H, W))
        -> (B, K, ceil(H/stride), ceil(W/stride)) logits
    """

    def __init__(self, decoder_channels: int, channels: int, stride: int, num_classes: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"detail stride must be 1 or 2, got {stride}")
        self.image = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True), conv_bn_relu(channels, channels))
        self.fuse = conv_bn_relu(decoder_channels + channels, channels)
        self.delta = nn.Conv2d(channels, num_classes, 1)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, decoded: torch.Tensor, coarse: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        detail = self.image(images)
        size = detail.shape[-2:]
        up = resize_bilinear(decoded, size)
        base = resize_bilinear(coarse, size)
        return base + self.delta(self.fuse(torch.cat([up, detail], dim=1)))


class SubpixelHead(nn.Module):
    """Per-pixel corrections of the upsampled stride-4 logits, computed at stride 4 (a cheap detail head).

    Each 4 x 4 cell's 16 raw pixels (48 values) are concatenated with the decoder's stride-4
    features; one 3x3 conv (with BatchNorm and ReLU) + 1x1 predicts a correction for each of the
    16 pixels and both classes, and ``pixel_shuffle`` puts them in place. Every conv runs on the
    stride-4 grid, so it costs a small part of what a :class:`DetailHead` at stride 2 costs, yet
    the logits come at full resolution: where a 4 x 4 cell straddles a boundary, the cell's pixels
    say which of them lie on the object's side. The correction starts at zero, so training starts
    from plain LAVT.

    forward(decoded (B, Cd, h, w), coarse (B, K, h, w), images (B, 3, H, W)) -> (B, K, H, W) float32
    logits, with h = ceil(H/4), w = ceil(W/4) (the images are padded by replication to 4h x 4w and
    the logits cropped back).
    """

    factor = 4

    def __init__(self, decoder_channels: int, channels: int, num_classes: int = 2):
        super().__init__()
        f = self.factor
        # one 3x3 conv over [features, pixels], split in two so the backward skips the gradient
        # with respect to the pixels (a third of that conv's cost)
        self.from_features = nn.Conv2d(decoder_channels, channels, 3, padding=1, bias=False)
        self.from_pixels = nn.Conv2d(3 * f * f, channels, 3, padding=1, bias=False)
        self.norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.delta = nn.Conv2d(channels, num_classes * f * f, 1)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, decoded: torch.Tensor, coarse: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        f = self.factor
        (h, w), (H, W) = decoded.shape[-2:], images.shape[-2:]
        if (f * h, f * w) != (H, W):
            images = F.pad(images, (0, f * w - W, 0, f * h - H), mode="replicate")
        # each cell's pixels as channels (pixel_unshuffle up to the channel order, which a learned conv
        # does not care about); from an NHWC batch this is one copy, where pixel_unshuffle took 2 % of a step
        b, c = images.shape[:2]
        cells = (images.to(decoded.dtype).permute(0, 2, 3, 1).reshape(b, h, f, w, f, c).permute(0, 1, 3, 2, 4, 5)
                 .reshape(b, h, w, f * f * c).permute(0, 3, 1, 2))                    # (B, 3 f^2, h, w)
        hidden = self.norm(self.from_features(decoded) + self.from_pixels(cells))
        delta = F.pixel_shuffle(self.delta(hidden), f)
        # float32 NCHW, as LAVT upsamples its logits: bf16 NHWC with 2 channels is the slow path
        base = resize_bilinear(coarse.float().contiguous(), (f * h, f * w))
        logits = base + delta.float()
        # slicing only where padded: the backward of a slice fills a zero tensor of the full size
        return logits if (f * h, f * w) == (H, W) else logits[..., :H, :W]


class SegDecoder(nn.Module):
    """Fuse multi-scale features from coarse to fine.

    forward([f1, ..., fS], images=None) with f_i (B, C_i, H_i, W_i), finest first (f1 at stride 4)
    -> (B, num_classes, H_1, W_1); with a detail head (``detail_stride`` 2 or 1) the images
    (B, 3, H, W) are required and the logits come at H/detail_stride instead; with a
    :class:`SubpixelHead` (``subpixel_channels`` > 0, stride 4 only) they come at (H, W).
    """

    def __init__(self, in_channels: list[int], channels: int, num_classes: int = 2, detail_stride: int = 4,
                 detail_channels: int = 16, subpixel_channels: int = 0):
        super().__init__()
        top = in_channels[-1]
        self.blocks = nn.ModuleList()
        for c in reversed(in_channels[:-1]):
            self.blocks.append(nn.Sequential(conv_bn_relu(top + c, channels), conv_bn_relu(channels, channels)))
            top = channels
        self.classifier = nn.Conv2d(top, num_classes, 1)
        if subpixel_channels and detail_stride != 4:
            raise ValueError(f"a subpixel head refines stride-4 logits; detail_stride is {detail_stride}")
        if subpixel_channels:
            self.detail = SubpixelHead(top, subpixel_channels, num_classes)
        else:
            self.detail = None if detail_stride == 4 else DetailHead(top, detail_channels, detail_stride, num_classes)

    def forward(self, feats: list[torch.Tensor], images: torch.Tensor | None = None) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            x = resize_bilinear(x, skip.shape[-2:])
            x = block(torch.cat([x, skip], dim=1))
        logits = self.classifier(x)
        if self.detail is None:
            return logits
        if images is None:
            raise ValueError("a decoder with a detail head needs the images")
        return self.detail(x, logits, images)
