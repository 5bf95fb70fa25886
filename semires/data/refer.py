"""Reader for the REFER layout in which RefCOCO, RefCOCO+ and G-Ref ship.

Layout (as in the public REFER API)::

    <refer_dir>/instances.json        COCO-style images, annotations (polygons or RLE), categories
    <refer_dir>/refs(<split_by>).p    pickled list of refs: ref_id, ann_id, image_id, category_id,
                                      split, sentences [{sent_id, sent, raw, tokens}], sent_ids
    <image_dir>/<file_name>           the images

``split_by`` is ``unc`` (RefCOCO/RefCOCO+: train/val/testA/testB), ``umd`` (G-Ref: train/val/
test) or ``google`` (G-Ref: train/val). RefShapes is written in exactly this layout.
The refs pickle is read with :mod:`semires.data.safe_pickle`, never plain pickle.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semires.data import masks as mask_codec
from semires.data.safe_pickle import safe_load
from semires.errors import DataError

SPLIT_BYS = ("unc", "umd", "google")
KNOWN_SPLITS = ("train", "val", "test", "testA", "testB", "testC")
_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


@dataclass
class Refer:
    """In-memory REFER dataset with the public REFER API's lookups.

    Attributes mirror the REFER API: ``refs`` (ref_id -> ref), ``anns``, ``imgs``, ``cats``
    (id -> name), ``sents`` (sent_id -> sentence dict), plus the reverse maps
    ``img_to_refs``, ``ann_to_ref``, ``ref_to_ann``.
    """

    refer_dir: Path
    split_by: str
    refs: dict[int, dict] = field(default_factory=dict)
    anns: dict[int, dict] = field(default_factory=dict)
    imgs: dict[int, dict] = field(default_factory=dict)
    cats: dict[int, str] = field(default_factory=dict)
    sents: dict[int, dict] = field(default_factory=dict)
    img_to_refs: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))
    ann_to_ref: dict[int, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, refer_dir: str | Path, split_by: str = "unc") -> Refer:
        """Load ``instances.json`` and ``refs(<split_by>).p`` from ``refer_dir``.

        Raises :class:`DataError` naming the file for anything missing or inconsistent.
        """
        refer_dir = Path(refer_dir)
        if split_by not in SPLIT_BYS:
            raise DataError(f"unknown split_by '{split_by}'", refer_dir, f"use one of {', '.join(SPLIT_BYS)}")
        inst_path = refer_dir / "instances.json"
        refs_path = refer_dir / f"refs({split_by}).p"
        for p in (inst_path, refs_path):
            if not p.is_file():
                raise DataError("file not found", p, "point data.refer_dir at a folder holding "
                                "instances.json and refs(<split_by>).p, or run `semires data synth`")
        try:
            instances = json.loads(inst_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", inst_path, "download or generate it again") from exc
        for key in ("images", "annotations", "categories"):
            if key not in instances:
                raise DataError(f"missing key '{key}'", inst_path, "a COCO instances file is required")
        raw_refs = safe_load(refs_path)
        if not isinstance(raw_refs, list):
            raise DataError("expected a list of refs", refs_path, "use the REFER refs file")

        self = cls(refer_dir=refer_dir, split_by=split_by)
        self.imgs = {int(im["id"]): im for im in instances["images"]}
        self.cats = {int(c["id"]): c["name"] for c in instances["categories"]}
        for ann in instances["annotations"]:
            img = self.imgs.get(int(ann["image_id"]))
            if img is None:
                raise DataError(f"annotation {ann['id']} points to unknown image {ann['image_id']}",
                                inst_path, "repair or regenerate instances.json")
            self.anns[int(ann["id"])] = ann
        for i, ref in enumerate(raw_refs):
            missing = [k for k in _REF_KEYS if not isinstance(ref, dict) or k not in ref]
            if missing:
                raise DataError(f"ref #{i} lacks {', '.join(missing)}", refs_path, "use the REFER refs file")
            ann_id, image_id = int(ref["ann_id"]), int(ref["image_id"])
            if ann_id not in self.anns:
                raise DataError(f"ref {ref['ref_id']} points to unknown annotation {ann_id}",
                                refs_path, "the refs file and instances.json do not belong together")
            if image_id not in self.imgs or int(self.anns[ann_id]["image_id"]) != image_id:
                raise DataError(f"ref {ref['ref_id']} image {image_id} does not hold annotation {ann_id}",
                                refs_path, "the refs file and instances.json do not belong together")
            if not ref["sentences"]:
                raise DataError(f"ref {ref['ref_id']} has no sentences", refs_path, "drop or repair the ref")
            rid = int(ref["ref_id"])
            self.refs[rid] = ref
            self.img_to_refs[image_id].append(ref)
            self.ann_to_ref[ann_id] = ref
            for s in ref["sentences"]:
                self.sents[int(s["sent_id"])] = s
        return self

    # -- REFER-style queries -------------------------------------------------------------
    def get_ref_ids(self, image_ids: Iterable[int] = (), cat_ids: Iterable[int] = (),
                    split: str | None = None) -> list[int]:
        """Ref ids filtered by images, categories and split (REFER ``getRefIds``).

        ``split`` is a split name, or ``testAB`` (testA+testB, the REFER convention).
        """
        image_ids, cat_ids = set(image_ids), set(cat_ids)
        out = []
        for rid, ref in self.refs.items():
            if image_ids and int(ref["image_id"]) not in image_ids:
                continue
            if cat_ids and int(ref.get("category_id", -1)) not in cat_ids:
                continue
            if split is not None:
                if split == "testAB":
                    if ref["split"] not in ("testA", "testB"):
                        continue
                elif ref["split"] != split:
                    continue
            out.append(rid)
        return sorted(out)

    def splits(self) -> list[str]:
        """Split names present in the refs, in canonical order."""
        present = {r["split"] for r in self.refs.values()}
        return [s for s in KNOWN_SPLITS if s in present] + sorted(present - set(KNOWN_SPLITS))

    def ann_rle(self, ann_id: int) -> dict:
        """The annotation's mask as compressed RLE (polygons are rasterised as pycocotools does)."""
        ann = self.anns[ann_id]
        img = self.imgs[int(ann["image_id"])]
        return mask_codec.segmentation_to_rle(ann["segmentation"], int(img["height"]), int(img["width"]))

    def ref_mask(self, ref_id: int) -> np.ndarray:
        """(H, W) bool mask of the object a ref refers to (REFER ``getMask``)."""
        return mask_codec.decode(self.ann_rle(int(self.refs[ref_id]["ann_id"])))
