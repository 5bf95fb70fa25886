"""A batch's candidates from a :class:`~semires.refine.packing.CandidateSource`, packed for refinement.

Above both packings: it builds per-image atoms (:mod:`semires.refine.atoms`) or a dense stack
(:mod:`semires.refine.packing`), so neither of those modules needs the other's loader.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semires.refine.atoms import AtomCandidates, pack_for_device
from semires.refine.packing import CandidateBatch, CandidateSource


def gather_candidates(source: CandidateSource, image_ids: Sequence[int], size: tuple[int, int] | int,
                      device: torch.device | str | None = None, atoms: dict | None = None):
    """Candidates of a batch of samples (``image_ids`` may repeat: each image is read once).

    With ``atoms`` (a dict, e.g. one per stage run) each image's atoms are built once and kept in the
    dict, and the batch is packed by :func:`~semires.refine.atoms.pack_for_device` (atoms on the CPU,
    dense on CUDA); without it, a dense :class:`CandidateBatch`. All refine identically.

    Returns:
        :class:`~semires.refine.atoms.AtomBatch` or :class:`CandidateBatch` of ``len(image_ids)`` samples at
        ``size`` (an int is a square side), on ``device`` (default CPU).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    seen: dict[int, torch.Tensor] = {}
    stacks = []
    for iid in image_ids:
        iid = int(iid)
        if atoms is not None and iid in atoms:
            stacks.append(atoms[iid])
            continue
        if iid not in seen:
            m = torch.as_tensor(source.masks(iid, hw))
            if m.dim() != 3 or tuple(m.shape[1:]) != hw:
                raise ValueError(f"candidate source returned {tuple(m.shape)} for image {iid}, expected (K, {hw[0]}, "
                                 f"{hw[1]})")
            seen[iid] = m.bool()
            if atoms is not None:
                atoms[iid] = AtomCandidates.from_masks(seen[iid])
        stacks.append(atoms[iid] if atoms is not None else seen[iid])
    if atoms is not None:
        return pack_for_device(stacks, device)
    return CandidateBatch.from_list(stacks, size=hw, device=device)
