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
from pathlib import Path, PurePosixPath

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
        raw_refs = safe_load(refs_path)
        self = cls(refer_dir=refer_dir, split_by=split_by)
        self._read_instances(instances, inst_path)
        if not isinstance(raw_refs, list):
            raise DataError(f"expected a list of refs, found {type(raw_refs).__name__}", refs_path,
                            "use the REFER refs file")
        for i, ref in enumerate(raw_refs):
            self._add_ref(i, ref, refs_path)
        return self

    def _read_instances(self, instances, path: Path) -> None:
        """Fill imgs, cats, anns from a COCO instances document, checking its structure field by field."""
        fix = "repair or regenerate instances.json (a COCO instances file)"
        if not isinstance(instances, dict):
            raise DataError(f"top level is a {type(instances).__name__}, expected an object with images, "
                            "annotations and categories", path, fix)
        for key in ("images", "annotations", "categories"):
            if key not in instances:
                raise DataError(f"missing key '{key}'", path, "a COCO instances file is required")
            if not isinstance(instances[key], list):
                raise DataError(f"'{key}' is a {type(instances[key]).__name__}, expected a list", path, fix)
        for i, im in enumerate(instances["images"]):
            where = f"images[{i}]"
            _need(im, {"id": int, "file_name": str, "height": int, "width": int}, where, path)
            if im["height"] <= 0 or im["width"] <= 0:
                raise DataError(f"{where}: size {im['width']}x{im['height']} is not positive", path, fix)
            check_relative(im["file_name"], f"{where}.file_name", path)
            self.imgs[int(im["id"])] = im
        for i, c in enumerate(instances["categories"]):
            _need(c, {"id": int, "name": str}, f"categories[{i}]", path)
            self.cats[int(c["id"])] = c["name"]
        for i, ann in enumerate(instances["annotations"]):
            where = f"annotations[{i}]"
            _need(ann, {"id": int, "image_id": int, "category_id": int, "bbox": list,
                        "segmentation": (list, dict)}, where, path)
            if len(ann["bbox"]) != 4 or not all(_is_number(v) for v in ann["bbox"]):
                raise DataError(f"{where}.bbox is {ann['bbox']!r}, expected [x, y, w, h] numbers", path, fix)
            if int(ann["image_id"]) not in self.imgs:
                raise DataError(f"annotation {ann['id']} points to unknown image {ann['image_id']}", path, fix)
            self.anns[int(ann["id"])] = ann

    def _add_ref(self, i: int, ref, path: Path) -> None:
        missing = [k for k in _REF_KEYS if not isinstance(ref, dict) or k not in ref]
        if missing:
            raise DataError(f"ref #{i} lacks {', '.join(missing)}", path, "use the REFER refs file")
        _need(ref, {"ref_id": int, "ann_id": int, "image_id": int, "split": str, "sentences": list}, f"ref #{i}",
              path)
        ann_id, image_id = int(ref["ann_id"]), int(ref["image_id"])
        if ann_id not in self.anns:
            raise DataError(f"ref {ref['ref_id']} points to unknown annotation {ann_id}",
                            path, "the refs file and instances.json do not belong together")
        if image_id not in self.imgs or int(self.anns[ann_id]["image_id"]) != image_id:
            raise DataError(f"ref {ref['ref_id']} image {image_id} does not hold annotation {ann_id}",
                            path, "the refs file and instances.json do not belong together")
        if not ref["sentences"]:
            raise DataError(f"ref {ref['ref_id']} has no sentences", path, "drop or repair the ref")
        for j, sent in enumerate(ref["sentences"]):
            _need(sent, {"sent_id": int, "sent": str}, f"ref {ref['ref_id']} sentences[{j}]", path)
        self.refs[int(ref["ref_id"])] = ref
        self.img_to_refs[image_id].append(ref)
        self.ann_to_ref[ann_id] = ref
        for sent in ref["sentences"]:
            self.sents[int(sent["sent_id"])] = sent

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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(obj, fields: dict, where: str, path: Path) -> None:
    """Raise :class:`DataError` naming ``where`` unless ``obj`` is a dict whose ``fields`` have the given types
    (``int`` accepts integral floats and numeric strings, as the public REFER files sometimes store ids)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where} is a {type(obj).__name__}, expected an object", path, "repair or regenerate it")
    for key, kind in fields.items():
        if key not in obj:
            raise DataError(f"{where} lacks '{key}'", path, "repair or regenerate it")
        v = obj[key]
        if kind is int:
            ok = (_is_number(v) and float(v).is_integer()) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())
        else:
            ok = isinstance(v, kind)
        if not ok:
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            want = {"int": "an integer", "str": "a string", "list": "a list"}.get(want, want)
            raise DataError(f"{where}.{key} is {v!r:.60}, expected {want}", path, "repair or regenerate it")


def check_relative(name: str, field_name: str, source: str | Path) -> None:
    """Refuse an image ``file_name`` that could leave the image folder: absolute, ``..`` parts, a drive, or empty.

    Raises :class:`DataError` naming ``field_name`` in ``source``.
    """
    p = PurePosixPath(name.replace("\\", "/"))
    if not name or p.is_absolute() or ".." in p.parts or ":" in (p.parts[0] if p.parts else ""):
        raise DataError(f"{field_name} {name!r} is not a relative path inside the image folder", source,
                        "store image paths relative to data.image_dir, without '..' or a leading '/'")
