"""The candidate gate: what a SAM (or embedded) candidate shard holds, checked per image and per mask.

- every image the shard was meant to cover has an entry (images that failed must be listed by the
  stage, not silently missing) and no image appears twice;
- each image has between ``min_per_image`` and ``max_per_image`` candidates;
- every mask is non-empty (``min_area`` px), at most ``max_area_frac`` of its image, of the image's
  size, and its RLE is not pathologically long (``max_rle_chars_per_pixel``: a speckled mask
  usually means a broken generator or a wrong image size).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from semires import io
from semires.checks.config import CandidateChecks
from semires.checks.engine import CheckReport, Table, run_gate
from semires.data import masks as mask_codec


def shard_records(shard_file: str | Path) -> list[tuple[int, list[dict]]]:
    """``(image_id, [RLE, ...])`` per line of a candidate shard file (``shards/*.jsonl`` of the store)."""
    import json

    out = []
    with open(shard_file, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            out.append((int(rec["image_id"]), [c["rle"] for c in rec["candidates"]]))
    return out


def check_candidates(records: Iterable[tuple[int, Sequence[dict]]], index_path: str | Path,
                     expected_images: Sequence[int], subject: str | Path, report_path: str | Path | None = None,
                     cfg: CandidateChecks | None = None, failed_images: Sequence[int] = (),
                     raise_on_failure: bool = True) -> CheckReport:
    """Gate on the candidates of one shard.

    Args:
        records: ``(image_id, [RLE dict, ...])`` per image of the shard.
        index_path: the index (image sizes).
        expected_images: the image ids the shard was assigned.
        subject: the shard's path, named in the report and error.
        failed_images: images the stage listed as unreadable (``candidates.allow_failures``); they
            count as covered and need no candidates.
    """
    import great_expectations as gx
    import pandas as pd

    cfg = cfg or CandidateChecks()
    E = gx.expectations
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in io.read_json(index_path)["images"]}
    expected = {int(i) for i in expected_images}
    failed = {int(i) for i in failed_images}
    img_rows, mask_rows = [], []
    for image_id, rles in records:
        image_id = int(image_id)
        h, w = sizes.get(image_id, (-1, -1))
        img_rows.append({"image_id": image_id, "count": len(rles), "expected": image_id in expected})
        for k, rle in enumerate(rles):
            area = mask_codec.area(rle)
            rh, rw = (int(s) for s in rle["size"])
            mask_rows.append({"candidate": f"{image_id}:{k}", "size_ok": (rh, rw) == (h, w), "area": area,
                              "area_frac": area / max(1, h * w),
                              "rle_chars_per_pixel": len(rle["counts"]) / max(1, h * w)})
    images = pd.DataFrame(img_rows, columns=["image_id", "count", "expected"])
    missing = sorted(expected - failed - set(images["image_id"]))
    covered = pd.DataFrame({"image_id": missing, "present": [False] * len(missing)}, columns=["image_id", "present"])
    masks = pd.DataFrame(mask_rows, columns=["candidate", "size_ok", "area", "area_frac", "rle_chars_per_pixel"])
    tables = [
        Table("candidate images", images, "image_id", [
            E.ExpectColumnValuesToBeUnique(column="image_id", description="each image appears once"),
            E.ExpectColumnValuesToBeInSet(column="expected", value_set=[True],
                                          description="only images assigned to this shard"),
            E.ExpectColumnValuesToBeBetween(column="count", min_value=cfg.min_per_image, max_value=cfg.max_per_image,
                                            description=f"{cfg.min_per_image} to {cfg.max_per_image} candidates "
                                                        "per image"),
        ]),
        Table("missing images", covered, "image_id", [
            E.ExpectTableRowCountToEqual(value=0, description="every assigned image has candidates or is listed "
                                                              "as failed"),
            E.ExpectColumnValuesToBeInSet(column="present", value_set=[True],
                                          description="(ids of the images without candidates)"),
        ]),
        Table("candidate masks", masks, "candidate", [
            E.ExpectColumnValuesToBeInSet(column="size_ok", value_set=[True],
                                          description="every mask has its image's size"),
            E.ExpectColumnValuesToBeBetween(column="area", min_value=cfg.min_area,
                                            description=f"masks are non-empty (>= {cfg.min_area} px)"),
            E.ExpectColumnValuesToBeBetween(column="area_frac", max_value=cfg.max_area_frac,
                                            description=f"masks cover at most {cfg.max_area_frac:.0%} of the image"),
            E.ExpectColumnValuesToBeBetween(column="rle_chars_per_pixel", max_value=cfg.max_rle_chars_per_pixel,
                                            description=f"RLE length <= {cfg.max_rle_chars_per_pixel} chars per "
                                                        "pixel (no speckled masks)"),
        ]),
    ]
    return run_gate("candidates", tables, {"candidates": subject, "index": index_path}, report_path,
                    raise_on_failure)
