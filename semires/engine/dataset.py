"""A torch Dataset of referring expressions: image, target mask and tokens per (ref, sentence).

Built over a :class:`~semires.data.index.RefIndex` and a list of expressions (for instance all
expressions of the labeled train images, or of the val split). Sentences are tokenized once up
front; resized images and masks are kept in memory after their first read (``cache_images``).
Indexed with a list of indices it returns the whole batch, built in one go; :func:`batch_loader` is
the DataLoader that asks for batches that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from semires.data.index import Expression, RefIndex
from semires.engine.runtime import autocast
from semires.engine.transforms import normalize, resize_image, resize_mask
from semires.models.text import tokenize


class ExpressionDataset(Dataset):
    """Item ``i`` is a dict (``ds[[i, j, ...]]`` gives the batch: every field stacked on a new dim 0):

    - ``image``: (3, S, S) float32, ImageNet-normalised (S = ``image_size``)
    - ``mask``: (S, S) int64 in {0, 1}, the referred object (nearest-resized)
    - ``input_ids``, ``attention_mask``: (L,) int64 (L = ``max_tokens``)
    - ``index``, ``ref_id``, ``sent_id``, ``image_id``: int64 scalars
    - ``categories`` (only with ``categories`` given): (S, S) int64, every annotated object of the
      image painted with its head class (``categories[category_id]``, 1..K), 0 elsewhere
    """

    def __init__(self, index: RefIndex, expressions: Sequence[Expression], tokenizer, image_size: int,
                 max_tokens: int, cache_images: bool = True, categories: dict[int, int] | None = None):
        self.index = index
        self.expressions = list(expressions)
        self.image_size = int(image_size)
        self.cache_images = cache_images
        self.categories = categories
        self._images: dict[int, np.ndarray] = {}
        self._masks: dict[int, np.ndarray] = {}
        self._category_maps: dict[int, np.ndarray] = {}
        if self.expressions:
            self.input_ids, self.attention_mask = tokenize(tokenizer, [e.sent for e in self.expressions], max_tokens)
        else:
            self.input_ids = self.attention_mask = torch.zeros((0, max_tokens), dtype=torch.long)

    @classmethod
    def from_split(cls, index: RefIndex, tokenizer, image_size: int, max_tokens: int, split: str | None = None,
                   image_ids: Iterable[int] | None = None, **kwargs) -> ExpressionDataset:
        """All expressions of ``split`` (any when None) whose image is in ``image_ids`` (all when None)."""
        return cls(index, index.expressions(split, image_ids), tokenizer, image_size, max_tokens, **kwargs)

    def __len__(self) -> int:
        return len(self.expressions)

    def image(self, image_id: int) -> np.ndarray:
        """(S, S, 3) uint8 resized image."""
        img = self._images.get(image_id)
        if img is None:
            img = resize_image(self.index.load_image(image_id), self.image_size)
            if self.cache_images:
                self._images[image_id] = img
        return img

    def target(self, ann_id: int) -> np.ndarray:
        """(S, S) bool resized mask of an annotation."""
        m = self._masks.get(ann_id)
        if m is None:
            m = resize_mask(self.index.ann_mask(ann_id), self.image_size)
            if self.cache_images:
                self._masks[ann_id] = m
        return m

    def category_map(self, image_id: int) -> np.ndarray:
        """(S, S) uint8 head class per pixel (0 = no annotated object; int64 past 255 classes); needs
        ``categories``."""
        m = self._category_maps.get(image_id)
        if m is None:
            dtype = np.uint8 if max(self.categories.values(), default=0) <= 255 else np.int64
            m = np.zeros((self.image_size, self.image_size), dtype)
            for aid in self.index.image_anns(image_id):
                m[self.target(aid)] = self.categories[int(self.index.anns[aid]["category_id"])]
            if self.cache_images:
                self._category_maps[image_id] = m
        return m

    def __getitem__(self, i: int | Sequence[int]) -> dict[str, torch.Tensor]:
        """Item ``i``, or with a 1-d sequence of indices their batch: what ``default_collate`` of
        the items gives, with every field stacked once instead of per item (per-item tensors and
        their collation took about 4 of 6 ms per 128 px batch of 32, every training step)."""
        if np.ndim(i) == 0:
            return {k: v[0] for k, v in self[[int(i)]].items()}
        rows = torch.as_tensor(np.asarray(i, dtype=np.int64))
        exprs = [self.expressions[k] for k in rows.tolist()]
        batch = {
            "image": normalize(np.stack([self.image(e.image_id) for e in exprs])),
            "mask": torch.from_numpy(np.stack([self.target(e.ann_id) for e in exprs])).long(),
            "input_ids": self.input_ids[rows],
            "attention_mask": self.attention_mask[rows],
            "index": rows,
            "ref_id": torch.tensor([e.ref_id for e in exprs], dtype=torch.int64),
            "sent_id": torch.tensor([e.sent_id for e in exprs], dtype=torch.int64),
            "image_id": torch.tensor([e.image_id for e in exprs], dtype=torch.int64),
        }
        if self.categories is not None:
            batch["categories"] = torch.from_numpy(np.stack([self.category_map(e.image_id) for e in exprs])).long()
        return batch

    def example_inputs(self, n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's inputs for the first ``n`` items (repeated when fewer; needs one): ``(image,
        input_ids, attention_mask)``, e.g. a model signature's example (a batch of >= 2 keeps the
        batch dim dynamic)."""
        batch = self[[i % len(self) for i in range(n)]]
        return batch["image"], batch["input_ids"], batch["attention_mask"]

    def _replace(self, **fields) -> ExpressionDataset:
        """A shallow copy with ``fields`` replaced (tokens and, unless replaced, caches shared)."""
        other = object.__new__(ExpressionDataset)
        other.__dict__.update(self.__dict__, **fields)
        return other

    def resized(self, image_size: int) -> ExpressionDataset:
        """The same expressions (tokens shared) at another ``image_size``, with its own image caches."""
        if int(image_size) == self.image_size:
            return self
        return self._replace(image_size=int(image_size), _images={}, _masks={}, _category_maps={})

    def subset(self, n: int | None) -> ExpressionDataset:
        """A dataset of ``n`` evenly spaced expressions (deterministic; all when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        return self.select(np.linspace(0, len(self) - 1, n).round().astype(int))

    def select(self, indices: Sequence[int]) -> ExpressionDataset:
        """The expressions at ``indices`` (in that order), sharing this dataset's image caches."""
        keep = np.asarray(indices, dtype=np.int64)
        return self._replace(expressions=[self.expressions[k] for k in keep], input_ids=self.input_ids[keep],
                             attention_mask=self.attention_mask[keep])


def batch_loader(dataset: Dataset, batch_sampler: Iterable[Sequence[int]], num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """A DataLoader that indexes ``dataset`` once per batch, with the batch's index list (torch's
    automatic batching off), for datasets that batch themselves (:class:`ExpressionDataset`, or a
    ``Subset`` of one). ``batch_sampler`` yields index lists, e.g. ``BatchSampler(rows, size, False)``
    for ``rows`` in order."""
    return DataLoader(dataset, sampler=batch_sampler, batch_size=None, num_workers=num_workers, pin_memory=pin_memory)


def warm_text_cache(model: torch.nn.Module, *datasets: ExpressionDataset, dtype: torch.dtype | None = None) -> None:
    """Encode every distinct sentence once, in a fixed order, so cached features never depend on
    which batch first met a sentence (this keeps resumed runs bit-identical).

    At most the text encoder's ``cache_size`` distinct sentences are encoded, taken from the
    datasets in the order given (pass the ones read most often first): beyond it they would only
    evict each other, and the rest are encoded when a batch first meets them.

    ``dtype``: the training's autocast dtype (None = full precision). The features are those an
    autocast forward would compute, and in bf16 the encoding takes half the time (about 7 of 15 s
    for RefShapes' 8.8k sentences on 2 CPU cores).
    """
    text = getattr(model, "text", None)
    if text is None or not getattr(text, "use_cache", False):
        return
    seen: dict[bytes, int] = {}
    rows_ids, rows_mask = [], []
    for ds in datasets:
        for ids, mask in zip(ds.input_ids, ds.attention_mask):
            key = ids.numpy().tobytes()
            if key not in seen and len(rows_ids) < text.cache_size:
                seen[key] = len(rows_ids)
                rows_ids.append(ids)
                rows_mask.append(mask)
    if rows_ids:
        device = next(model.parameters()).device
        with autocast(device, dtype):
            text.warm_cache(torch.stack(rows_ids).to(device), torch.stack(rows_mask).to(device))
