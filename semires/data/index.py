"""The index: one JSON table of images, annotations, refs and sentences that every stage reads.

Built once from a REFER folder (:func:`build_index`), validated on the way (images readable,
annotations inside their image, refs pointing to known annotations). Masks stay compressed RLE.

File format (``format: semires-index/1``)::

    {"format", "dataset", "split_by", "image_root" (relative to the index file),
     "cats":   [{"id", "name"}],
     "images": [{"id", "file_name", "height", "width"}],
     "anns":   [{"id", "image_id", "category_id", "bbox" [x,y,w,h], "area", "rle"}],
     "refs":   [{"ref_id", "ann_id", "image_id", "category_id", "split",
                 "sentences": [{"sent_id", "sent"}]}]}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from semires import io
from semires.data import masks as mask_codec
from semires.data.refer import Refer, check_relative
from semires.errors import DataError

FORMAT = "semires-index/1"


def inside(root: str | Path, file_name: str, source: str | Path) -> Path:
    """``root / file_name``, refused unless ``file_name`` is a plain relative path (no ``..`` part, not
    absolute), so an index or instances file cannot point reads outside the image folder. Symlinked files
    inside the folder are allowed (DVC checks out with links into its cache). ``source`` is the file that
    holds ``file_name`` (named in the error)."""
    check_relative(file_name, "file_name", source)
    return Path(root) / file_name


def _check_image(path: Path, height: int, width: int) -> None:
    if not path.is_file():
        raise DataError("image file not found", path, "check data.image_dir, or regenerate the dataset")
    try:
        with Image.open(path) as im:
            im.load()  # decodes fully: a truncated file fails here, not in training
            size = im.size
    except Exception as exc:
        raise DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", path,
                        "replace the file with a valid copy") from exc
    if size != (width, height):
        raise DataError(f"image is {size[0]}x{size[1]} but instances.json says {width}x{height}",
                        path, "replace the image or fix its entry in instances.json")


def _check_ann_inside(ann: dict, img: dict, source: Path) -> None:
    h, w = int(img["height"]), int(img["width"])
    x, y, bw, bh = (float(v) for v in ann["bbox"])
    seg = ann["segmentation"]
    outside = x < -0.5 or y < -0.5 or x + bw > w + 0.5 or y + bh > h + 0.5
    if isinstance(seg, list):
        for poly in seg:
            xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
            outside |= bool((xs < -0.5).any() or (ys < -0.5).any() or (xs > w + 0.5).any() or (ys > h + 0.5).any())
    elif [int(s) for s in seg["size"]] != [h, w]:
        raise DataError(f"annotation {ann['id']} mask size {seg['size']} differs from image {img['id']} "
                        f"size [{h}, {w}]", source, "repair or regenerate instances.json")
    if outside:
        raise DataError(f"annotation {ann['id']} lies outside image {img['id']} ({w}x{h}): bbox {ann['bbox']}",
                        source, "repair or regenerate instances.json")


def build_index(refer_dir: str | Path, image_dir: str | Path, out_path: str | Path,
                split_by: str = "unc", dataset: str = "refer", check_images: bool = True,
                progress: bool = True) -> Path:
    """Convert a REFER folder to the index JSON at ``out_path`` (written atomically).

    Only images and annotations that some ref uses are kept. With ``check_images`` every used
    image is decoded once, so a corrupt file is reported here with its path.
    """
    refer = Refer.load(refer_dir, split_by)
    image_dir, out_path = Path(image_dir), Path(out_path)
    inst = Path(refer_dir) / "instances.json"
    used_imgs = sorted({int(r["image_id"]) for r in refer.refs.values()})
    used_anns = sorted({int(r["ann_id"]) for r in refer.refs.values()})
    images = []
    for iid in tqdm(used_imgs, desc="index: images", disable=not progress, unit="img"):
        im = refer.imgs[iid]
        if check_images:
            _check_image(inside(image_dir, im["file_name"], inst), int(im["height"]), int(im["width"]))
        images.append({"id": iid, "file_name": im["file_name"], "height": int(im["height"]),
                       "width": int(im["width"])})
    anns = []
    for aid in used_anns:
        ann = refer.anns[aid]
        try:
            _check_ann_inside(ann, refer.imgs[int(ann["image_id"])], inst)
            rle = refer.ann_rle(aid)
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a malformed segmentation
            raise DataError(f"annotation {aid}: unreadable segmentation ({type(exc).__name__}: {exc})", inst,
                            "store polygons [[x, y, ...]] or COCO RLE {size, counts}") from exc
        if mask_codec.area(rle) == 0:
            raise DataError(f"annotation {aid} has an empty mask", inst, "drop the ref or repair the annotation")
        anns.append({"id": aid, "image_id": int(ann["image_id"]), "category_id": int(ann["category_id"]),
                     "bbox": [float(v) for v in ann["bbox"]], "area": mask_codec.area(rle), "rle": rle})
    refs = []
    for rid in sorted(refer.refs):
        r = refer.refs[rid]
        refs.append({"ref_id": rid, "ann_id": int(r["ann_id"]), "image_id": int(r["image_id"]),
                     "category_id": int(r.get("category_id", refer.anns[int(r["ann_id"])]["category_id"])),
                     "split": str(r["split"]),
                     "sentences": [{"sent_id": int(s["sent_id"]), "sent": str(s["sent"])} for s in r["sentences"]]})
    rel_root = os.path.relpath(image_dir.resolve(), out_path.resolve().parent)
    doc = {"format": FORMAT, "dataset": dataset, "split_by": split_by, "image_root": rel_root,
           "cats": [{"id": k, "name": v} for k, v in sorted(refer.cats.items())],
           "images": images, "anns": anns, "refs": refs}
    return io.write_json(out_path, doc, indent=None)


@dataclass(frozen=True)
class Expression:
    """One (ref, sentence) pair: the unit that RES models are trained and evaluated on."""

    ref_id: int
    sent_id: int
    image_id: int
    ann_id: int
    sent: str
    split: str


class RefIndex:
    """Read-only view of an index file with the lookups the stages need."""

    def __init__(self, doc: dict, path: Path):
        if doc.get("format") != FORMAT:
            raise DataError(f"unknown index format {doc.get('format')!r}", path, "rebuild it with `semires data index`")
        self.path = path
        self.dataset = doc["dataset"]
        self.split_by = doc["split_by"]
        self.image_root = (path.parent / doc["image_root"]).resolve()
        self.cats = {int(c["id"]): c["name"] for c in doc["cats"]}
        self.images = {int(im["id"]): im for im in doc["images"]}
        self.anns = {int(a["id"]): a for a in doc["anns"]}
        self.refs = {int(r["ref_id"]): r for r in doc["refs"]}
        self._anns_by_image: dict[int, list[int]] = {}
        for aid in sorted(self.anns):
            self._anns_by_image.setdefault(int(self.anns[aid]["image_id"]), []).append(aid)

    @classmethod
    def load(cls, path: str | Path) -> RefIndex:
        """Load an index written by :func:`build_index`."""
        path = Path(path)
        return cls(io.read_json(path), path)

    def image_path(self, image_id: int) -> Path:
        """The image file, always inside ``image_root`` (a ``file_name`` that leaves it raises :class:`DataError`)."""
        return inside(self.image_root, self.images[image_id]["file_name"], self.path)

    def load_image(self, image_id: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image; a corrupt file raises :class:`DataError` naming it."""
        p = self.image_path(image_id)
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as exc:
            raise DataError(f"corrupt or unreadable image ({type(exc).__name__}: {exc})", p,
                            "replace the file with a valid copy") from exc

    def ann_mask(self, ann_id: int) -> np.ndarray:
        """(H, W) bool mask of an annotation."""
        return mask_codec.decode(self.anns[ann_id]["rle"])

    def ref_mask(self, ref_id: int) -> np.ndarray:
        """(H, W) bool mask of the object a ref refers to."""
        return self.ann_mask(int(self.refs[ref_id]["ann_id"]))

    def image_anns(self, image_id: int) -> list[int]:
        """Sorted ids of the image's annotations in the index (those some ref uses)."""
        return self._anns_by_image.get(int(image_id), [])

    def image_ids(self, split: str | None = None) -> list[int]:
        """Sorted ids of images that have refs in ``split`` (all images when None)."""
        if split is None:
            return sorted(self.images)
        return sorted({int(r["image_id"]) for r in self.refs.values() if r["split"] == split})

    def ref_ids(self, split: str | None = None, image_ids: Iterable[int] | None = None) -> list[int]:
        """Sorted ref ids in ``split`` (any when None), restricted to ``image_ids`` when given."""
        keep = None if image_ids is None else {int(i) for i in image_ids}
        return sorted(rid for rid, r in self.refs.items()
                      if (split is None or r["split"] == split) and (keep is None or int(r["image_id"]) in keep))

    def expressions(self, split: str | None = None, image_ids: Iterable[int] | None = None) -> list[Expression]:
        """Every (ref, sentence) pair in ``split`` / ``image_ids``, ordered by ref then sentence id."""
        return list(self._iter_expressions(self.ref_ids(split, image_ids)))

    def _iter_expressions(self, ref_ids: Iterable[int]) -> Iterator[Expression]:
        for rid in ref_ids:
            r = self.refs[rid]
            for s in r["sentences"]:
                yield Expression(rid, int(s["sent_id"]), int(r["image_id"]), int(r["ann_id"]), s["sent"], r["split"])

    def splits(self) -> list[str]:
        return sorted({r["split"] for r in self.refs.values()})
