"""The index and label-split gate: the first data check of the pipeline.

Asserts, with great_expectations on pandas tables built from the files:
- images, annotations, refs and sentences have unique ids;
- every ref's annotation and image exist, and the annotation belongs to the ref's image;
- masks are non-empty, their RLE has the image's size (so they lie inside it) and their stored
  area matches the RLE; bounding boxes lie inside the image;
- every ref has at least one sentence and sentences are non-empty;
- a train split exists; per label split: ids are train images, labeled and unlabeled are disjoint
  and together cover train, and at least ``min_labeled_images`` are labeled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semires import io
from semires.checks.config import DataChecks
from semires.checks.engine import CheckReport, Table, run_gate
from semires.data import masks as mask_codec
from semires.data.index import RefIndex
from semires.data.splits import load_split


def _index_tables(doc: dict, cfg: DataChecks) -> list[Table]:
    """Tables from the raw index document (not :class:`RefIndex`, whose dicts would hide duplicate ids)."""
    import great_expectations as gx
    import pandas as pd

    E = gx.expectations
    images_by_id = {int(im["id"]): im for im in doc["images"]}
    anns_by_id = {int(a["id"]): a for a in doc["anns"]}
    images = pd.DataFrame([{"image_id": int(im["id"]), "height": int(im["height"]), "width": int(im["width"])}
                           for im in doc["images"]], columns=["image_id", "height", "width"])
    ann_rows = []
    for a in doc["anns"]:
        aid = a["id"]
        im = images_by_id.get(int(a["image_id"]))
        h, w = (int(im["height"]), int(im["width"])) if im else (-1, -1)
        x, y, bw, bh = (float(v) for v in a["bbox"])
        rle_h, rle_w = (int(s) for s in a["rle"]["size"])
        ann_rows.append({"ann_id": int(aid), "image_known": im is not None, "rle_h": rle_h, "rle_w": rle_w,
                         "img_h": h, "img_w": w, "area": int(a["area"]), "rle_area": mask_codec.area(a["rle"]),
                         # margins from the bbox to the image border; >= -0.5 px means inside
                         "bbox_margin": min(x, y, w - (x + bw), h - (y + bh))})
    anns = pd.DataFrame(ann_rows, columns=["ann_id", "image_known", "rle_h", "rle_w", "img_h", "img_w", "area",
                                           "rle_area", "bbox_margin"])
    ref_rows, sent_rows = [], []
    for r in doc["refs"]:
        rid = r["ref_id"]
        ann = anns_by_id.get(int(r["ann_id"]))
        ref_rows.append({"ref_id": int(rid), "split": str(r["split"]), "ann_known": ann is not None,
                         "image_known": int(r["image_id"]) in images_by_id,
                         "ann_in_image": ann is not None and int(ann["image_id"]) == int(r["image_id"]),
                         "n_sentences": len(r["sentences"])})
        for s in r["sentences"]:
            sent_rows.append({"sent_id": int(s["sent_id"]), "ref_id": int(rid), "sent": str(s["sent"]).strip()})
    refs = pd.DataFrame(ref_rows, columns=["ref_id", "split", "ann_known", "image_known", "ann_in_image",
                                           "n_sentences"])
    sents = pd.DataFrame(sent_rows, columns=["sent_id", "ref_id", "sent"])
    true = [True]
    return [
        Table("images", images, "image_id", [
            E.ExpectTableRowCountToBeBetween(min_value=1, description="the index has images"),
            E.ExpectColumnValuesToBeUnique(column="image_id", description="image ids are unique"),
            E.ExpectColumnValuesToBeBetween(column="height", min_value=1, description="image heights are positive"),
            E.ExpectColumnValuesToBeBetween(column="width", min_value=1, description="image widths are positive"),
        ]),
        Table("anns", anns, "ann_id", [
            E.ExpectColumnValuesToBeUnique(column="ann_id", description="annotation ids are unique"),
            E.ExpectColumnValuesToBeInSet(column="image_known", value_set=true,
                                          description="every annotation's image exists"),
            E.ExpectColumnValuesToBeBetween(column="rle_area", min_value=cfg.min_mask_area,
                                            description=f"masks are non-empty (>= {cfg.min_mask_area} px)"),
            E.ExpectColumnPairValuesToBeEqual(column_A="rle_h", column_B="img_h",
                                              description="mask height equals its image's height"),
            E.ExpectColumnPairValuesToBeEqual(column_A="rle_w", column_B="img_w",
                                              description="mask width equals its image's width"),
            E.ExpectColumnPairValuesToBeEqual(column_A="area", column_B="rle_area",
                                              description="stored area equals the mask's pixel count"),
            E.ExpectColumnValuesToBeBetween(column="bbox_margin", min_value=-0.5,
                                            description="bounding boxes lie inside their image"),
        ]),
        Table("refs", refs, "ref_id", [
            E.ExpectTableRowCountToBeBetween(min_value=1, description="the index has refs"),
            E.ExpectColumnValuesToBeUnique(column="ref_id", description="ref ids are unique"),
            E.ExpectColumnValuesToBeInSet(column="ann_known", value_set=true,
                                          description="every ref's annotation exists"),
            E.ExpectColumnValuesToBeInSet(column="image_known", value_set=true,
                                          description="every ref's image exists"),
            E.ExpectColumnValuesToBeInSet(column="ann_in_image", value_set=true,
                                          description="every ref's annotation belongs to the ref's image"),
            E.ExpectColumnValuesToBeBetween(column="n_sentences", min_value=1,
                                            description="every ref has at least one expression"),
            E.ExpectColumnDistinctValuesToContainSet(column="split", value_set=["train"],
                                                     description="a train split exists"),
        ]),
        Table("sentences", sents, "sent_id", [
            E.ExpectColumnValuesToBeUnique(column="sent_id", description="sentence ids are unique"),
            E.ExpectColumnValuesToNotBeNull(column="sent", description="expressions are present"),
            E.ExpectColumnValueLengthsToBeBetween(column="sent", min_value=cfg.min_sentence_chars,
                                                  description="expressions are non-empty"),
        ]),
    ]


def _split_table(doc: dict, split_dir: Path, cfg: DataChecks) -> Table:
    import great_expectations as gx
    import pandas as pd

    E = gx.expectations
    split = load_split(split_dir)
    train = {int(r["image_id"]) for r in doc["refs"] if r["split"] == "train"}
    rows = [{"image_id": i, "is_labeled": int(part == "labeled"), "is_train": i in train}
            for part, ids in (("labeled", split.labeled), ("unlabeled", split.unlabeled)) for i in ids]
    frame = pd.DataFrame(rows, columns=["image_id", "is_labeled", "is_train"])
    return Table(f"split {split_dir.name}", frame, "image_id", [
        E.ExpectColumnValuesToBeUnique(
            column="image_id", description="labeled and unlabeled image ids are disjoint (no id listed twice)"),
        E.ExpectColumnValuesToBeInSet(column="is_train", value_set=[True],
                                      description="split ids are train images of the index"),
        E.ExpectTableRowCountToEqual(value=len(train), description="labeled + unlabeled cover every train image"),
        E.ExpectColumnSumToBeBetween(column="is_labeled", min_value=cfg.min_labeled_images,
                                     description=f"at least {cfg.min_labeled_images} image(s) are labeled"),
    ])


def check_index_and_splits(index_path: str | Path, split_dirs: Sequence[str | Path] = (),
                           report_path: str | Path | None = None, cfg: DataChecks | None = None,
                           raise_on_failure: bool = True) -> CheckReport:
    """Gate on an index file and any number of label-split folders.

    Args:
        index_path: index JSON written by :func:`semires.data.index.build_index`.
        split_dirs: split folders (``<out>/<ratio_name>``) written by :mod:`semires.data.splits`.
        report_path: where the readable report goes (text; JSON when it ends in ``.json``).
        cfg: thresholds (defaults: :class:`DataChecks`).
        raise_on_failure: raise :class:`semires.errors.CheckFailed` on any failed expectation.
    Returns:
        The :class:`CheckReport`; ``str(report)`` is a one-line summary.
    """
    cfg = cfg or DataChecks()
    doc = io.read_json(index_path)
    RefIndex(doc, Path(index_path))  # raises DataError naming the file on an unknown format
    tables = _index_tables(doc, cfg) + [_split_table(doc, Path(d), cfg) for d in split_dirs]
    subjects = {"index": index_path, **{f"split {Path(d).name}": d for d in split_dirs}}
    return run_gate("index_and_splits", tables, subjects, report_path, raise_on_failure)
