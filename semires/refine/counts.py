"""Exact pixel counts between masks, fast on CPU without per-candidate loops.

A bool tensor stores one byte (0 or 1) per pixel. Viewing 8 such bytes as one int64 word turns
"AND then count" into word operations: ``a & b`` ANDs 8 pixels at once, and adding up to 255
words never carries out of a byte, so summing words in groups of <= 255 and then adding the
bytes gives exact counts. Nothing is converted to float, so counts are exact on every device.

On CPU the flat candidate stack is processed in row blocks of about ``block_bytes`` so that the
AND temporaries stay in cache: allocating one temporary as large as the whole stack
(B=8, K=100, 480x480 is 184 MB) costs more in page faults than the arithmetic. The number of
blocks depends on bytes, not on candidates; on CUDA the whole stack is one block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_GROUP = 255  # words summed before a byte lane could overflow (each lane adds at most 1 per word)
DEFAULT_BLOCK_BYTES = 2 << 20


def as_words(flat: torch.Tensor) -> torch.Tensor:
    """(R, L) bool, contiguous -> (R, ceil(L / 8)) int64 words with 0/1 byte lanes (zero-padded)."""
    if flat.shape[1] % 8:
        flat = F.pad(flat.view(torch.uint8), (0, 8 - flat.shape[1] % 8))
    return flat.contiguous().view(torch.uint8).view(torch.int64)


def _group(wd: int) -> int:
    """Words per partial sum: the largest divisor of ``wd`` <= 255 when it is large enough to keep
    the reshape free of a tail, else 255 (the tail is summed separately)."""
    for g in range(min(_GROUP, wd), 31, -1):
        if wd % g == 0:
            return g
    return _GROUP


def _lane_counts(words: torch.Tensor, group: int | None = None) -> torch.Tensor:
    """(R, Wd) int64 words of 0/1 byte lanes -> (R,) int64 number of set lanes per row."""
    r, wd = words.shape
    g = group or _group(wd)
    head = wd - wd % g
    if head == wd:
        partial = words.reshape(r, wd // g, g).sum(-1)
    else:
        parts = [words[:, head:].sum(-1, keepdim=True)]
        if head:
            parts.insert(0, words[:, :head].reshape(r, head // g, g).sum(-1))
        partial = torch.cat(parts, 1)
    return partial.view(torch.uint8).sum(1)


def pixel_counts(masks: torch.Tensor, owner: torch.Tensor, reference: torch.Tensor,
                 block_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Areas and intersections of every mask with its sample's reference mask.

    Args:
        masks: (N, H, W) bool, N >= 0 (e.g. candidates of all samples, flat).
        owner: (N,) int64 in [0, B): which reference row each mask is compared with.
        reference: (B, H, W) bool (e.g. the teacher's pseudo-masks).
        block_bytes: CPU working-set size per block; None: 2 MiB on CPU, one block on CUDA.
    Returns:
        ``(inter (N,), area (N,), ref_area (B,))`` int64: ``|M_n and P_owner(n)|``, ``|M_n|``, ``|P_b|``.
    """
    n, b = masks.shape[0], reference.shape[0]
    if masks.shape[1:] != reference.shape[1:]:
        raise ValueError(f"masks are {tuple(masks.shape[1:])} but reference masks are {tuple(reference.shape[1:])}")
    if masks.dtype != torch.bool or reference.dtype != torch.bool:
        raise ValueError(f"masks must be bool, got {masks.dtype} and {reference.dtype}")
    ref_words = as_words(reference.reshape(b, -1))
    ref_area = _lane_counts(ref_words) if b else torch.zeros(0, dtype=torch.int64, device=reference.device)
    inter = torch.zeros(n, dtype=torch.int64, device=masks.device)
    area = torch.zeros(n, dtype=torch.int64, device=masks.device)
    if n == 0:
        return inter, area, ref_area
    words = as_words(masks.reshape(n, -1))
    wd = words.shape[1]
    if block_bytes is None:
        block_bytes = DEFAULT_BLOCK_BYTES if masks.device.type == "cpu" else n * wd * 8
    rows = max(1, min(n, block_bytes // (wd * 8)))
    anded = torch.empty(rows, wd, dtype=torch.int64, device=masks.device)
    refs = torch.empty(rows, wd, dtype=torch.int64, device=masks.device)
    g = _group(wd)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = words[start:stop]
        area[start:stop] = _lane_counts(block, g)
        torch.index_select(ref_words, 0, owner[start:stop], out=refs[: stop - start])
        torch.bitwise_and(block, refs[: stop - start], out=anded[: stop - start])
        inter[start:stop] = _lane_counts(anded[: stop - start], g)
    return inter, area, ref_area


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` in float64 (IEEE-exact for counts), 0 where ``den`` is 0."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))
