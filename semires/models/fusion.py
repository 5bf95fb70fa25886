"""Language-aware vision encoding (LAVT, Yang et al. CVPR 2022): pixel-word attention + language gate.

At every backbone stage, each pixel attends over the words of the expression; the attended
language feature is multiplied with a projection of the pixel feature (PWAM), and a learned
tanh gate decides how much of that multimodal feature flows back into the visual stream.
"""

from __future__ import annotations

import torch
from torch import nn

# score given to padding positions: far enough below any word's score that its softmax weight is
# exactly 0 in float32 (exp(-1e4) underflows), and representable in bfloat16 and float16
PAD_SCORE = 1e4


def coord_maps(batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """(B, 2, H, W) normalised x and y coordinates in [-1, 1] (pixel centres)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None].expand(batch, -1, -1, -1)


class InstanceNorm(nn.Module):
    """Normalise each channel over positions: (B, C, N) -> (B, C, N), zero mean and unit variance.

    Same as ``nn.InstanceNorm1d`` (no affine), but also defined for N = 1 (gives zeros), which
    tiny inputs reach at stride 32.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)


class PixelWordAttention(nn.Module):
    """Each pixel (query) attends over the words (keys/values); padded words are masked out.

    forward(pixels (B, N, Cq) , words (B, Cl, L), word_mask (B, L) float {0, 1}) -> (B, N, C)
    """

    def __init__(self, query_channels: int, lang_channels: int, channels: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.heads = num_heads
        self.channels = channels
        self.query = nn.Sequential(nn.Conv1d(query_channels, channels, 1), InstanceNorm())
        self.key = nn.Conv1d(lang_channels, channels, 1)
        self.value = nn.Conv1d(lang_channels, channels, 1)
        self.out = nn.Sequential(nn.Conv1d(channels, channels, 1), InstanceNorm())

    def forward(self, pixels: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = pixels.shape
        h, d = self.heads, self.channels // self.heads
        m = word_mask[:, None, :]                                      # (B, 1, L)
        q = self.query(pixels.transpose(1, 2))                         # (B, C, N)
        k = self.key(words) * m                                        # (B, C, L)
        v = self.value(words) * m
        # words on dim 2 and pixels last: the softmax then runs over the ~20 words with the pixels as
        # the contiguous, vectorised axis. With words last, the softmax and its backward took about
        # 10 % of a 128 px CPU training step (now about 2 %); it is the same function either way
        q = q.reshape(b, h, d, n) * d ** -0.5                          # (B, h, d, N)
        k = k.reshape(b, h, d, -1).transpose(2, 3)                     # (B, h, L, d)
        v = v.reshape(b, h, d, -1)                                     # (B, h, d, L)
        # the padding mask rides in the product: one more key channel, 0 for a word and -PAD for
        # padding, meets a query channel of ones. Masking the (B, h, L, N) scores afterwards took a
        # full pass over them forward and backward (the largest tensors of a fusion); this adds a
        # pass over the 4x smaller queries. Padding keys are 0, so their score is exactly -PAD.
        pad = ((word_mask - 1) * PAD_SCORE).to(k.dtype)[:, None, :, None].expand(b, h, -1, 1)
        k = torch.cat([k, pad], dim=3)                                 # (B, h, L, d + 1)
        q = torch.cat([q, q.new_ones(b, h, 1, n)], dim=2)              # (B, h, d + 1, N)
        sim = k @ q                                                    # (B, h, L, N)
        att = (v @ sim.softmax(dim=2)).reshape(b, self.channels, n)   # (B, C, N)
        return self.out(att).transpose(1, 2)                           # (B, N, C)


class PWAM(nn.Module):
    """Pixel-word attention module: projected pixel feature x attended language feature.

    forward(x (B, Cin, H, W), words (B, Cl, L), word_mask (B, L)) -> (B, C, H, W) multimodal
    feature, where Cin = C (+2 with coordinate maps).
    """

    def __init__(self, in_channels: int, channels: int, lang_channels: int, num_heads: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.vis_project = nn.Sequential(nn.Conv1d(in_channels, channels, 1), nn.GELU(), nn.Dropout(dropout))
        self.attention = PixelWordAttention(in_channels, lang_channels, channels, num_heads)
        self.project_mm = nn.Sequential(nn.Conv1d(channels, channels, 1), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, _, hgt, wid = x.shape
        flat = x.flatten(2)                                            # (B, Cin, N)
        vis = self.vis_project(flat)                                   # (B, C, N)
        lang = self.attention(flat.transpose(1, 2), words, word_mask)  # (B, N, C)
        mm = self.project_mm(vis * lang.transpose(1, 2))
        return mm.reshape(b, -1, hgt, wid)


class LanguageGate(nn.Module):
    """Per-channel gate in [-1, 1] on the multimodal feature (LAVT's language pathway)."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, channels, bias=False), nn.ReLU(),
                                 nn.Linear(channels, channels, bias=False), nn.Tanh())

    def forward(self, mm: torch.Tensor) -> torch.Tensor:
        """mm (B, C, H, W) -> gate (B, C, H, W)."""
        return self.net(mm.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def sentence_feature(words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real words' features: words (B, Cl, L), word_mask (B, L) -> (B, Cl)."""
    m = word_mask[:, None, :]
    return (words * m).sum(-1) / m.sum(-1).clamp_min(1.0)


class FusionBlock(nn.Module):
    """One stage's fusion: ``x + gate(mm) * mm`` with ``mm = PWAM(x, words)``.

    With ``sentence_film`` the stage's features are first scaled and shifted per channel from the
    mean word feature (FiLM, zero-initialised so training starts from plain LAVT). A small
    backbone trained from scratch learns to ground expressions much sooner with this global cue;
    the pixel-word attention still does the localisation.

    forward(x (B, C, H, W), words (B, Cl, L), word_mask (B, L)) -> (B, C, H, W)
    """

    def __init__(self, channels: int, lang_channels: int, num_heads: int = 1, dropout: float = 0.0,
                 coords: bool = False, sentence_film: bool = False):
        super().__init__()
        self.coords = coords
        self.film = nn.Linear(lang_channels, 2 * channels) if sentence_film else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.pwam = PWAM(channels + (2 if coords else 0), channels, lang_channels, num_heads, dropout)
        self.gate = LanguageGate(channels)

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        if self.film is not None:
            gamma, beta = self.film(sentence_feature(words, word_mask)).chunk(2, dim=1)
            x = x * (1 + gamma[..., None, None]) + beta[..., None, None]
        inp = x
        if self.coords:
            b, _, h, w = x.shape
            inp = torch.cat([x, coord_maps(b, h, w, x.device, x.dtype)], dim=1)
        mm = self.pwam(inp, words, word_mask)
        return x + self.gate(mm) * mm
