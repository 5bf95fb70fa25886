"""Bilinear resizing as two small matrix products (the function of ``F.interpolate(..., mode="bilinear",
align_corners=False)``, not its kernel).

Bilinear interpolation is separable and linear: ``out = A_h x A_w^T`` per channel, with ``A`` the
(out, in) matrix of each output row's two source rows and weights. On the CPU, torch's bilinear
kernel, and above all its backward (a scatter-add), took about 8 ms of a 160 ms 128 px training
step of the 100 % supervised model; as matrix products both directions are dense GEMMs, and the
step is 4.4 ms faster (timed interleaved in one process).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 bilinear weights, align_corners=False, as torch computes its source
    coordinates: ``src = (dst + 0.5) * n_in / n_out - 0.5``, clamped at 0, the next row clamped at
    the last. NumPy, not torch: a tensor made and cached while torch.export or torch.compile traces
    the model would be a fake tensor, and every later eager call would get it."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for dst in range(n_out):
        src = max((dst + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        w1 = src - i0
        a[dst, i0] += 1.0 - w1
        a[dst, i1] += w1
    a.setflags(write=False)
    return a


def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(n_out, n_in) bilinear interpolation weights (rows sum to 1)."""
    return torch.tensor(_weights(int(n_in), int(n_out)), dtype=dtype, device=device)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` for x (B, C, h, w) -> (B, C, H, W),
    to float rounding, computed as two matrix products.

    Keeps ``x``'s memory format (a channels-last input is resized over its (h, w, C) layout, without a
    copy to NCHW) and computes in ``x``'s dtype, also under autocast, as ``F.interpolate`` does.
    Downsampling (H < h or W < w) is left to ``F.interpolate``.
    """
    b, c, h, w = x.shape
    big_h, big_w = int(size[0]), int(size[1])
    if (big_h, big_w) == (h, w):
        return x
    if big_h < h or big_w < w:
        return F.interpolate(x, size=(big_h, big_w), mode="bilinear", align_corners=False)
    ah = interpolation_matrix(h, big_h, x.dtype, x.device)
    aw = interpolation_matrix(w, big_w, x.dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):  # in x's dtype, as F.interpolate computes
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            nhwc = x.permute(0, 2, 3, 1)                                          # (B, h, w, C), a view
            rows = (ah @ nhwc.reshape(b, h, w * c)).reshape(b * big_h, w, c)    # (B H, w, C)
            return (aw @ rows).reshape(b, big_h, big_w, c).permute(0, 3, 1, 2)  # channels-last
        return ah @ x @ aw.T
