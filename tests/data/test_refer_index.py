import json
import pickle

import numpy as np
import pytest
from pycocotools.coco import COCO

from semires.data.index import RefIndex, build_index
from semires.data.refer import Refer
from semires.errors import DataError


def test_reader_follows_refer_semantics(mini_refer):
    refer = Refer.load(mini_refer, "unc")
    assert len(refer.refs) == 16 and len(refer.imgs) == 8 and refer.cats == {1: "square", 2: "disc"}
    assert refer.splits() == ["train", "val", "testA", "testB"]
    assert refer.get_ref_ids(split="val") == [1040, 1041]
    assert refer.get_ref_ids(split="testAB") == [1050, 1051, 1060, 1061]
    assert refer.get_ref_ids(image_ids=[100], cat_ids=[2]) == [1001]
    assert refer.ann_to_ref[1000]["ref_id"] == 1000
    assert len(refer.sents) == 32


def test_reader_masks_equal_pycocotools_polygons_and_rle(mini_refer):
    refer = Refer.load(mini_refer, "unc")
    coco = COCO(str(mini_refer / "instances.json"))
    for rid, ref in refer.refs.items():
        expected = coco.annToMask(coco.anns[ref["ann_id"]]).astype(bool)
        assert np.array_equal(refer.ref_mask(rid), expected)
    assert refer.ref_mask(1000)[2:12, 2:12].all()


def test_index_roundtrip(mini_refer, tmp_path):
    path = build_index(mini_refer, mini_refer / "images", tmp_path / "out" / "index.json", progress=False)
    idx = RefIndex.load(path)
    refer = Refer.load(mini_refer)
    for rid in refer.refs:
        assert np.array_equal(idx.ref_mask(rid), refer.ref_mask(rid))
    assert idx.image_path(100).is_file() and idx.load_image(100).shape == (32, 32, 3)
    exprs = idx.expressions("val")
    assert [(e.ref_id, e.sent) for e in exprs] == [(1040, "the square here"), (1040, "the square there"),
                                                    (1041, "the disc here"), (1041, "the disc there")]
    assert idx.ref_ids("train", image_ids=[100]) == [1000, 1001]
    # rebuilding gives identical bytes, so DVC sees no change
    before = path.read_bytes()
    build_index(mini_refer, mini_refer / "images", path, progress=False)
    assert path.read_bytes() == before


def _assert_clean_failure(tmp_path, mini_refer):
    """Index building fails with a one-line DataError and leaves no file behind."""
    out = tmp_path / "idx" / "index.json"
    with pytest.raises(DataError) as info:
        build_index(mini_refer, mini_refer / "images", out, progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    return msg


def test_missing_file_error(mini_refer, tmp_path):
    (mini_refer / "instances.json").unlink()
    msg = _assert_clean_failure(tmp_path, mini_refer)
    assert msg.startswith(str(mini_refer / "instances.json")) and "file not found" in msg


def test_corrupt_image_error(mini_refer, tmp_path):
    img = mini_refer / "images" / "img_103.png"
    img.write_bytes(img.read_bytes()[:40])
    msg = _assert_clean_failure(tmp_path, mini_refer)
    assert msg.startswith(str(img)) and "corrupt or unreadable image" in msg


def test_annotation_outside_image_error(mini_refer, tmp_path):
    inst = json.loads((mini_refer / "instances.json").read_text())
    inst["annotations"][2]["segmentation"] = [[20, 20, 40, 20, 40, 30, 20, 30]]
    inst["annotations"][2]["bbox"] = [20, 20, 20, 10]
    (mini_refer / "instances.json").write_text(json.dumps(inst))
    msg = _assert_clean_failure(tmp_path, mini_refer)
    assert "instances.json" in msg and "annotation 1002 lies outside image 101" in msg


def test_ref_with_unknown_annotation_error(mini_refer, tmp_path):
    refs_path = mini_refer / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[3]["ann_id"] = 999999
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    msg = _assert_clean_failure(tmp_path, mini_refer)
    assert msg.startswith(str(refs_path)) and "points to unknown annotation 999999" in msg


def test_bad_index_format(tmp_path):
    p = tmp_path / "index.json"
    p.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="unknown index format"):
        RefIndex.load(p)


def test_refshapes_default_reads_back_through_refer_and_pycocotools(refshapes_default):
    """Every ref of the default benchmark: COCO.annToMask == Refer mask == index mask."""
    refer_dir = refshapes_default["refer_dir"]
    refer = Refer.load(refer_dir, "unc")
    coco = COCO(str(refer_dir / "instances.json"))
    idx = RefIndex.load(refshapes_default["index"])
    assert len(refer.refs) > 5000 and set(refer.splits()) == {"train", "val", "testA", "testB"}
    for rid, ref in refer.refs.items():
        expected = coco.annToMask(coco.anns[ref["ann_id"]]).astype(bool)
        mine = refer.ref_mask(rid)
        assert expected.any() and np.array_equal(mine, expected), rid
        assert np.array_equal(idx.ref_mask(rid), mine), rid
