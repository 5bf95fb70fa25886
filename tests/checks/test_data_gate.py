"""The index/split gate passes on good data and fails, readably, on each kind of broken data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semires.checks import check_index_and_splits
from semires.data import masks as mask_codec
from semires.errors import CheckFailed


@pytest.fixture
def good(tmp_path: Path, refshapes_tiny: dict) -> dict:
    """A private copy of the tiny index and its splits that a test may break."""
    index = tmp_path / "index.json"
    doc = json.loads(Path(refshapes_tiny["index"]).read_text())
    doc["image_root"] = str(Path(refshapes_tiny["refer_dir"]) / "images")
    index.write_text(json.dumps(doc))
    splits = [Path(shutil.copytree(p, tmp_path / "splits" / Path(p).name)) for p in refshapes_tiny["splits"].values()]
    return {"index": index, "splits": splits, "doc": doc}


def _rewrite(index: Path, doc: dict) -> None:
    index.write_text(json.dumps(doc))


def test_passes_on_good_data_and_writes_report(good, tmp_path):
    report = tmp_path / "reports" / "data.txt"
    result = check_index_and_splits(good["index"], good["splits"], report_path=report)
    assert result.success and not result.failures
    assert "passed" in str(result)
    text = report.read_text()
    assert text.startswith("data check 'index_and_splits' passed")
    assert "FAIL" not in text and "labeled and unlabeled image ids are disjoint" in text
    js = check_index_and_splits(good["index"], good["splits"], report_path=tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["n_failed"] == 0 and js.success


def _first_ref(doc):
    return doc["refs"][0]


def break_duplicate_ref(doc, splits):
    doc["refs"][1]["ref_id"] = doc["refs"][0]["ref_id"]
    return "ref ids are unique", doc["refs"][0]["ref_id"]


def break_missing_annotation(doc, splits):
    ref = _first_ref(doc)
    ref["ann_id"] = 987654321
    return "every ref's annotation exists", ref["ref_id"]


def break_empty_mask(doc, splits):
    ann = doc["anns"][0]
    h, w = ann["rle"]["size"]
    ann["rle"] = mask_codec.encode(np.zeros((h, w), bool))
    ann["area"] = 0
    return "masks are non-empty", ann["id"]


def break_mask_outside_image(doc, splits):
    ann = doc["anns"][0]
    h, w = ann["rle"]["size"]
    ann["rle"] = mask_codec.encode(np.ones((h + 8, w), bool))
    ann["area"] = (h + 8) * w
    return "mask height equals its image's height", ann["id"]


def break_bbox_outside(doc, splits):
    ann = doc["anns"][1]
    ann["bbox"] = [ann["bbox"][0], ann["bbox"][1], 10_000.0, ann["bbox"][3]]
    return "bounding boxes lie inside their image", ann["id"]


def break_empty_expression(doc, splits):
    sent = _first_ref(doc)["sentences"][0]
    sent["sent"] = "   "
    return "expressions are non-empty", sent["sent_id"]


def break_split_overlap(doc, splits):
    d = splits[0]
    labeled = (d / "labeled.txt").read_text().split()
    (d / "unlabeled.txt").write_text((d / "unlabeled.txt").read_text() + labeled[0] + "\n")
    return "labeled and unlabeled image ids are disjoint", int(labeled[0])


def break_split_foreign_id(doc, splits):
    d = splits[1]
    (d / "unlabeled.txt").write_text((d / "unlabeled.txt").read_text() + "424242\n")
    return "split ids are train images of the index", 424242


@pytest.mark.parametrize("breaker", [break_duplicate_ref, break_missing_annotation, break_empty_mask,
                                     break_mask_outside_image, break_bbox_outside, break_empty_expression,
                                     break_split_overlap, break_split_foreign_id])
def test_fails_readably_on_broken_data(good, tmp_path, breaker):
    doc = good["doc"]
    expected, failing_id = breaker(doc, good["splits"])
    _rewrite(good["index"], doc)
    report = tmp_path / "report.txt"
    with pytest.raises(CheckFailed) as info:
        check_index_and_splits(good["index"], good["splits"], report_path=report)
    err = info.value
    # the one-line message names the file, the gate and what failed first
    assert str(good["index"]) in str(err) and "FAILED" in str(err)
    # the report names the failed expectation, with its GX type and the failing id
    failed = [block for block in err.report.split("\nFAIL ")[1:] if expected in block]
    assert failed, err.report
    assert "expectation: expect_" in failed[0]
    assert str(failing_id) in failed[0]
    assert report.read_text() == err.report


def test_missing_split_file_is_a_clear_error(good):
    (good["splits"][0] / "labeled.txt").unlink()
    from semires.errors import DataError

    with pytest.raises(DataError, match="labeled.txt"):
        check_index_and_splits(good["index"], good["splits"])


def test_report_only_mode_returns_failures_without_raising(good):
    doc = good["doc"]
    break_empty_expression(doc, good["splits"])
    _rewrite(good["index"], doc)
    result = check_index_and_splits(good["index"], [], raise_on_failure=False)
    assert not result.success
    assert [o.description for o in result.failures] == ["expressions are non-empty"]
