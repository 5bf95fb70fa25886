"""Weak and strong views of unlabeled images for mean-teacher training (SemiRES / FixMatch style).

- weak view (teacher input): the resized image, Gaussian-blurred with probability ``blur_p``;
- strong view (student input): the weak view plus colour jitter with probability ``jitter_p``.

Both views keep the geometry, so the teacher's pseudo-mask on the weak view is the target of
the student on the strong view. Views work on whole batches of (B, 3, S, S) float images in
[0, 1]; :func:`normalize_batch` applies the ImageNet normalisation once, at the end. Every random
draw comes from the ``torch.Generator`` passed in, so a step's views are reproducible from the
step number (resumed runs see the same views).

Hue jitter defaults to 0: RES expressions name colours ("the red star"), and a hue shift would
change which object they refer to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from semires.engine.transforms import IMAGENET_MEAN, IMAGENET_STD

_GRAY = (0.299, 0.587, 0.114)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (pixels), separable kernel truncated at 3 * max(sigma).

    Args:
        images: (B, C, H, W) float.
        sigma: (B,) float > 0.
    """
    b, c, h, w = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    radius = min(radius, max(1, min(h, w) - 1))  # reflect padding needs pad < size
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(x[None] ** 2) / (2 * sigma.double()[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).to(images.dtype).to(images.device)  # (B, 2r+1)
    k = k.repeat_interleave(c, 0)  # (B*C, 2r+1): one kernel per channel
    flat = images.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def weak_view(images: torch.Tensor, gen: torch.Generator, blur_p: float = 0.5,
              blur_sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """(B, 3, S, S) float in [0, 1] -> the weak view: blurred with probability ``blur_p`` per image."""
    b = images.shape[0]
    apply = torch.rand(b, generator=gen) < blur_p
    sigma = _uniform(b, *blur_sigma, gen)
    if not bool(apply.any()):
        return images.clone()
    out = images.clone()
    idx = apply.nonzero().flatten().to(images.device)
    out[idx] = gaussian_blur(images[idx], sigma[apply])
    return out


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def color_jitter(images: torch.Tensor, gen: torch.Generator, p: float = 0.5, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0) -> torch.Tensor:
    """Per image with probability ``p``: brightness, contrast, saturation (and hue) factors drawn
    uniformly from [1 - s, 1 + s] ([-hue, hue] for hue), applied in that order; output in [0, 1].

    Args:
        images: (B, 3, H, W) float in [0, 1].
    """
    b = images.shape[0]
    dev, dt = images.device, images.dtype
    apply = (torch.rand(b, generator=gen) < p).to(dev)
    fb = _uniform(b, max(0.0, 1 - brightness), 1 + brightness, gen).to(dev, dt)
    fc = _uniform(b, max(0.0, 1 - contrast), 1 + contrast, gen).to(dev, dt)
    fs = _uniform(b, max(0.0, 1 - saturation), 1 + saturation, gen).to(dev, dt)
    fh = _uniform(b, -hue, hue, gen)
    one = torch.ones_like(fb)
    fb, fc, fs = (torch.where(apply, f, one).view(b, 1, 1, 1) for f in (fb, fc, fs))
    x = (images * fb).clamp(0, 1)
    mean = _gray(x).mean(dim=(2, 3), keepdim=True)
    x = (fc * x + (1 - fc) * mean).clamp(0, 1)
    x = (fs * x + (1 - fs) * _gray(x)).clamp(0, 1)
    if hue > 0:
        from torchvision.transforms.v2.functional import adjust_hue

        x = torch.stack([adjust_hue(x[i], float(fh[i])) if bool(apply[i]) else x[i] for i in range(b)])
    return x


def strong_view(weak: torch.Tensor, gen: torch.Generator, jitter_p: float = 0.5, brightness: float = 0.4,
                contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0) -> torch.Tensor:
    """The strong view: colour jitter (see :func:`color_jitter`) on top of the weak view."""
    return color_jitter(weak, gen, jitter_p, brightness, contrast, saturation, hue)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> ImageNet-normalised, as :func:`semires.engine.transforms.normalize`."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of a training step's random views: a pure function of (seed, step)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + 17) % (2**63 - 1))
