"""Unlabeled expressions for semi-supervised training: raw images for the weak/strong views, the
image's SAM candidates (online mode) or the stored refined target (self-training mode).

Item ``i`` of :class:`UnlabeledDataset` is a dict:

- ``raw``: (3, S, S) uint8 resized image (views are made per batch, see :mod:`semires.train.views`)
- ``input_ids``, ``attention_mask``: (L,) int64
- ``index``, ``ref_id``, ``sent_id``, ``image_id``: int64 scalars
- ``truth``: (S, S) bool true mask, for logging pseudo-label quality only (never a training target)
- ``candidates``: :class:`~semires.refine.atoms.AtomCandidates` of the image at (S, S) (online mode
  with a candidate source); atoms are built once per image and cached (about H x W x 4 bytes each,
  instead of K x H x W for the dense stack)
- ``label``: (S, S) int64 and ``weight``: (S, S) float32, ``matched``: bool (self-training mode)
- ``ref_input_ids``, ``ref_attention_mask``: (K, L) int64 and ``ref_valid``: (K,) bool, the sentences of the
  item's ref (``ref_sentences`` > 0, for ``semi.ref_consensus``)
- ``rival_input_ids``, ``rival_attention_mask``: (R, K, L) int64 and ``rival_valid``: (R, K) bool, the
  sentences of up to R = ``competing_refs`` other refs of the item's image (for ``semi.ref_competition``;
  a missing ref or sentence is padded and marked False)
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from semires.engine.dataset import ExpressionDataset
from semires.errors import DataError
from semires.pseudo.refine_stage import load_refined, refined_target
from semires.pseudo.shards import PseudoStore
from semires.refine import AtomCandidates, CandidateSource

MAX_DECODED_BYTES = 2 << 30  # self-training keeps all probability shards decoded up to this size


class UnlabeledDataset(Dataset):
    """Wraps an :class:`ExpressionDataset` of unlabeled expressions (see module docstring)."""

    def __init__(self, base: ExpressionDataset, candidates: CandidateSource | None = None,
                 refined_dir: str | None = None, cache_candidates: int = 2048, ref_sentences: int = 0,
                 competing_refs: int = 0):
        self.base = base
        # ref_sentences > 0: each item also carries the tokens of up to that many sentences of its ref
        # (itself first), for a teacher that predicts on all of them (semi.ref_consensus)
        self.ref_sentences = int(ref_sentences)
        # competing_refs > 0 (needs ref_sentences): the other refs of the item's image too (semi.ref_competition)
        self.competing_refs = int(competing_refs)
        if self.competing_refs and not self.ref_sentences:
            raise ValueError("competing_refs needs ref_sentences > 0")
        self._ref_rows: dict[int, list[int]] = {}
        self._image_refs: dict[int, list[int]] = {}
        if self.ref_sentences:
            for row, e in enumerate(base.expressions):
                self._ref_rows.setdefault(e.ref_id, []).append(row)
            for ref_id in sorted(self._ref_rows):
                self._image_refs.setdefault(base.expressions[self._ref_rows[ref_id][0]].image_id, []).append(ref_id)
        self.candidates = candidates
        self._cands: OrderedDict[int, AtomCandidates] = OrderedDict()
        self._cache_size = cache_candidates
        self.refined = self.refine_cfg = self.pseudo = None
        if refined_dir is not None:
            self.refined, self.refine_cfg, pseudo_dir = load_refined(refined_dir)
            probe = PseudoStore(pseudo_dir)
            # random access over shards: keep them all decoded when that is small (uint8, S*S bytes each)
            fits = len(probe) * probe.image_size ** 2 <= MAX_DECODED_BYTES
            self.pseudo = PseudoStore(pseudo_dir, len(probe.shard_files) if fits else 4)
            if self.pseudo.image_size != base.image_size:
                raise DataError(f"refined labels are {self.pseudo.image_size} px but training uses "
                                f"{base.image_size} px", refined_dir, "set semi.image_size to the pseudo-label size")
            missing = [e for e in base.expressions if (e.ref_id, e.sent_id) not in self.refined]
            if missing:
                raise DataError(f"{len(missing)} unlabeled expressions have no refined label (e.g. ref "
                                f"{missing[0].ref_id})", refined_dir, "rerun pseudo_label and refine on this split")

    def __len__(self) -> int:
        return len(self.base)

    def _candidates(self, image_id: int) -> AtomCandidates:
        m = self._cands.get(image_id)
        if m is None:
            s = self.base.image_size
            stack = torch.as_tensor(self.candidates.masks(image_id, (s, s))).bool()
            if stack.dim() != 3 or tuple(stack.shape[1:]) != (s, s):
                raise DataError(f"the candidate source gave {tuple(stack.shape)} for image {image_id}, expected "
                                f"(K, {s}, {s})", None, "check the candidate store")
            m = AtomCandidates.from_masks(stack)
            self._cands[image_id] = m
            while len(self._cands) > self._cache_size:
                self._cands.popitem(last=False)
        else:
            self._cands.move_to_end(image_id)
        return m

    def __getitem__(self, i: int) -> dict:
        e = self.base.expressions[i]
        item = {"raw": torch.tensor(self.base.image(e.image_id)).permute(2, 0, 1),
                "input_ids": self.base.input_ids[i], "attention_mask": self.base.attention_mask[i],
                "index": torch.tensor(i), "ref_id": torch.tensor(e.ref_id), "sent_id": torch.tensor(e.sent_id),
                "image_id": torch.tensor(e.image_id), "truth": torch.from_numpy(self.base.target(e.ann_id))}
        if self.ref_sentences:
            item.update(self._ref_tokens(i, e.ref_id))
        if self.competing_refs:
            item.update(self._rival_tokens(e.image_id, e.ref_id))
        if self.candidates is not None:
            item["candidates"] = self._candidates(e.image_id)
        if self.refined is not None:
            prob_q, _ = self.pseudo.get((e.ref_id, e.sent_id))
            t = refined_target(self.refined[(e.ref_id, e.sent_id)], prob_q, self.refine_cfg)
            item.update(label=torch.from_numpy(t.label.astype(np.int64)), weight=torch.from_numpy(t.weight),
                        matched=torch.tensor(t.matched))
        return item


    def _ref_tokens(self, row: int, ref_id: int) -> dict:
        """``ref_input_ids`` / ``ref_attention_mask`` (K, L): the ref's sentences, this one first, padded
        with it to K = ``ref_sentences``; ``ref_valid`` (K,) bool marks the distinct ones."""
        rows = [row] + [r for r in self._ref_rows[ref_id] if r != row][: self.ref_sentences - 1]
        valid = torch.zeros(self.ref_sentences, dtype=torch.bool)
        valid[: len(rows)] = True
        rows = rows + [row] * (self.ref_sentences - len(rows))
        return {"ref_input_ids": self.base.input_ids[rows], "ref_attention_mask": self.base.attention_mask[rows],
                "ref_valid": valid}

    def _rival_tokens(self, image_id: int, ref_id: int) -> dict:
        """``rival_*`` (R, K, ...): the first ``ref_sentences`` sentences of each of the first
        ``competing_refs`` other refs of the image, padded with this item's first row (marked invalid)."""
        r, k = self.competing_refs, self.ref_sentences
        pad = self._ref_rows[ref_id][0]
        rows = torch.full((r, k), pad, dtype=torch.long)
        valid = torch.zeros((r, k), dtype=torch.bool)
        for j, other in enumerate([o for o in self._image_refs[image_id] if o != ref_id][:r]):
            mine = self._ref_rows[other][:k]
            rows[j, : len(mine)] = torch.tensor(mine)
            valid[j, : len(mine)] = True
        return {"rival_input_ids": self.base.input_ids[rows], "rival_attention_mask": self.base.attention_mask[rows],
                "rival_valid": valid}


def collate_unlabeled(items: list[dict]) -> dict:
    """Default collation, except ``candidates``, which stay a list (one AtomCandidates per sample)."""
    cands = [it.pop("candidates") for it in items] if items and "candidates" in items[0] else None
    batch = default_collate(items)
    if cands is not None:
        batch["candidates"] = cands
    return batch
