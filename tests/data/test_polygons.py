"""RefShapes objects are COCO polygons, as RefCOCO's are, and decode through pycocotools exactly as the REFER
API's getMask does it to the masks the generator drew; RLE datasets (refshapes/1, real RLE data) still read."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage

from semires.data import masks as mask_codec
from semires.data.index import RefIndex, build_index
from semires.data.polygons import mask_to_polygons
from semires.data.refer import Refer
from semires.data.synthetic import assign_splits, build_scene, generate, make_spec


def refer_get_mask(ann: dict, img: dict) -> np.ndarray:
    """The public REFER API's ``getMask`` (refer.py), line for line: polygons are summed, not merged."""
    if type(ann["segmentation"][0]) == list:  # polygon (REFER spells the test this way)
        rle = mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"])
    else:
        rle = ann["segmentation"]
    m = mask_utils.decode(rle)
    m = np.sum(m, axis=2)  # sometimes there are multiple binary map (corresponding to multiple segs)
    return m.astype(np.uint8)


def coco_ann_to_mask(ann: dict, img: dict) -> np.ndarray:
    """COCO's ``annToRLE`` + decode (what the brief's getMask and LAVT-style loaders run)."""
    h, w = img["height"], img["width"]
    if type(ann["segmentation"]) == list:
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
    elif type(ann["segmentation"]["counts"]) == list:
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
    else:
        rle = ann["segmentation"]
    return mask_utils.decode(rle)


def _decode(polygons, h, w) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_round_trip_exactly(seed):
    """Noise masks: many components, holes, diagonal contacts, pixels on every image border."""
    rng = np.random.default_rng(seed)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 33, 2))
        m = rng.random((h, w)) < rng.random()
        if rng.random() < 0.5 and m.any():
            m = ndimage.binary_closing(m, iterations=int(rng.integers(1, 3)))
        polys = mask_to_polygons(m)
        if not m.any():
            assert polys == []
            continue
        assert all(len(p) >= 8 and len(p) % 2 == 0 for p in polys)
        assert len(polys) == ndimage.label(m)[1]  # one polygon per 4-connected component
        assert np.array_equal(_decode(polys, h, w), m)
        summed = mask_utils.decode(mask_utils.frPyObjects(polys, h, w)).sum(2)
        assert np.array_equal(summed, m.astype(summed.dtype))  # components disjoint: sum = union


def test_ring_with_a_cut_and_a_hole_is_one_exact_polygon_per_piece():
    yy, xx = np.mgrid[:60, :70]
    d2 = (yy - 30) ** 2 + (xx - 35) ** 2
    ring = (d2 < 25 ** 2) & (d2 >= 12 ** 2)
    solid = (d2 < 8 ** 2) & ~((abs(yy - 30) < 2) & (abs(xx - 35) < 2))  # a disc with a small hole
    m = ring | solid
    polys = mask_to_polygons(m)
    assert len(polys) == 2 and np.array_equal(_decode(polys, 60, 70), m)
    square = np.zeros((6, 6), bool)
    square[1:4, 2:5] = True
    assert mask_to_polygons(square) == [[2, 1, 5, 1, 5, 4, 2, 4]]  # corners only, clockwise on screen
    frame = square.copy()
    frame[2, 3] = False
    # outer ring from its first corner (2, 1), the spine to the hole's ring (counter-clockwise), back, on round
    assert mask_to_polygons(frame) == [[2, 1, 3, 3, 4, 3, 4, 2, 3, 2, 3, 3, 2, 1, 5, 1, 5, 4, 2, 4]]
    assert np.array_equal(_decode(mask_to_polygons(frame), 6, 6), frame)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("rs") / "tiny", preset="tiny", seed=3, workers=1, progress=False)


def test_refshapes_decodes_like_refcoco_to_the_drawn_masks(tiny):
    """Every object is ``iscrowd: 0`` polygons; REFER's getMask and COCO's annToRLE give the mask the
    generator drew, pixel for pixel (IoU 1.0 for every object)."""
    inst = json.loads((tiny / "instances.json").read_text())
    refs = pickle.loads((tiny / "refs(unc).p").read_bytes())
    assert inst["info"]["version"] == "refshapes/2"
    imgs = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    spec, splits = make_spec("tiny"), assign_splits(make_spec("tiny"), 3)
    drawn = {}
    for image_id in imgs:
        _, objs, _ = build_scene(spec, 3, image_id - 1, splits[image_id - 1])
        drawn[image_id] = [o.visible for o in objs]
    by_image: dict[int, list[dict]] = {}
    for a in inst["annotations"]:
        assert a["iscrowd"] == 0 and isinstance(a["segmentation"], list) and a["segmentation"]
        by_image.setdefault(a["image_id"], []).append(a)
    for image_id, objs in by_image.items():
        for a, visible in zip(sorted(objs, key=lambda a: a["id"]), drawn[image_id], strict=True):
            assert np.array_equal(coco_ann_to_mask(a, imgs[image_id]).astype(bool), visible)
            assert a["area"] == visible.sum()
    for ref in refs:  # through the refs, as a RefCOCO loader reads them
        ann, img = anns[ref["ann_id"]], imgs[ref["image_id"]]
        m = refer_get_mask(ann, img)
        assert m.max() == 1 and np.array_equal(m == 1, coco_ann_to_mask(ann, img).astype(bool))


def test_rle_datasets_still_read(tiny, tmp_path):
    """A refshapes/1 dataset (compressed RLE segmentations) and the polygon one index to the same masks."""
    old = tmp_path / "rle"
    old.mkdir()
    inst = json.loads((tiny / "instances.json").read_text())
    for a in inst["annotations"]:
        img = next(im for im in inst["images"] if im["id"] == a["image_id"])
        a["segmentation"] = mask_codec.segmentation_to_rle(a["segmentation"], img["height"], img["width"])
    (old / "instances.json").write_text(json.dumps(inst))
    (old / "refs(unc).p").write_bytes((tiny / "refs(unc).p").read_bytes())
    new_refer, old_refer = Refer.load(tiny), Refer.load(old)
    assert all(np.array_equal(new_refer.ref_mask(r), old_refer.ref_mask(r)) for r in new_refer.refs)
    new_ix = RefIndex.load(build_index(tiny, tiny / "images", tmp_path / "new.json", progress=False))
    old_ix = RefIndex.load(build_index(old, tiny / "images", tmp_path / "old.json", progress=False))
    assert all(np.array_equal(new_ix.ref_mask(r), old_ix.ref_mask(r)) for r in new_refer.refs)
