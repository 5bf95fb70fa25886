"""A picture of a referring-expression dataset: sampled refs with their expressions and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from semires.data.index import RefIndex
from semires.data.refer import Refer
from semires.viz import overlay, save_grid


def _samples(source, n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, list[str], str]]:
    """(image, mask, sentences, split) of ``n`` refs from distinct images, drawn by ``rng``,
    taking turns over the splits."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        refer = Refer.load(source)
        refs = refer.refs

        def load(ref):
            with Image.open(Path(source) / "images" / refer.imgs[int(ref["image_id"])]["file_name"]) as im:
                return np.asarray(im.convert("RGB")), refer.ref_mask(int(ref["ref_id"]))
    else:
        index = source if isinstance(source, RefIndex) else RefIndex.load(source)
        refs = index.refs

        def load(ref):
            return index.load_image(int(ref["image_id"])), index.ref_mask(int(ref["ref_id"]))
    one_per_image: dict[int, int] = {}
    for rid in rng.permutation(sorted(refs)).tolist():
        one_per_image.setdefault(int(refs[rid]["image_id"]), rid)
    by_split: dict[str, list[int]] = {}
    for rid in one_per_image.values():
        by_split.setdefault(str(refs[rid]["split"]), []).append(rid)
    # Take turns over the splits (in sorted order) so that small test splits show up too.
    queues = [by_split[s] for s in sorted(by_split)]
    chosen = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)][:n]
    out = []
    for rid in chosen:
        ref = refs[rid]
        img, mask = load(ref)
        out.append((img, mask, [s["sent"] for s in ref["sentences"]], str(ref["split"])))
    return out


def render_preview(refer_dir_or_index, out_png: str | Path, n: int = 8, seed: int = 0,
                   title: str | None = None) -> Path:
    """Save a grid of ``n`` random refs (one per image, splits taking turns): the image, then the
    image dimmed outside the target mask, captioned with the split and every expression of the ref.

    ``refer_dir_or_index`` is a REFER folder with its images in ``images/`` (as RefShapes writes
    it), an index JSON path, or a loaded :class:`RefIndex`.
    """
    panels = []
    for img, mask, sents, split in _samples(refer_dir_or_index, n, np.random.default_rng(seed)):
        gap = np.full((img.shape[0], max(2, img.shape[1] // 32), 3), 255, np.uint8)
        # The target keeps its pixels, the rest is dimmed: a coloured tint would hide the object's
        # own colour, which the expressions talk about.
        focus = np.where(mask[..., None], img, (img * 0.3).astype(np.uint8))
        focus = overlay(focus, [mask], colors=np.array([[255, 255, 255]], np.uint8), alpha=0.0)
        caption = f"[{split}] " + " | ".join(sents)
        panels.append((np.concatenate([img, gap, focus], axis=1), caption))
    return save_grid(panels, out_png, ncols=4, panel_inches=3.4, title=title, caption_width=62, caption_lines=4)
