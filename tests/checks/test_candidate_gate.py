"""The candidate gate on hand-made shards: passes on sane masks, fails readably on each defect."""

from __future__ import annotations

import numpy as np
import pytest

from semires.checks import check_candidates
from semires.data import masks as mask_codec
from semires.data.index import RefIndex
from semires.errors import CheckFailed


@pytest.fixture
def shard(refshapes_tiny):
    index = RefIndex.load(refshapes_tiny["index"])
    ids = index.image_ids("train")[:4]
    recs = []
    for iid in ids:
        im = index.images[iid]
        h, w = im["height"], im["width"]
        m1 = np.zeros((h, w), bool)
        m1[2:20, 2:20] = True
        m2 = np.zeros((h, w), bool)
        m2[30:50, 10:40] = True
        recs.append((iid, mask_codec.encode_many(np.stack([m1, m2]))))
    return {"index": refshapes_tiny["index"], "ids": ids, "records": recs, "size": (h, w)}


def run(shard, records=None, **kw):
    return check_candidates(records if records is not None else shard["records"], shard["index"], shard["ids"],
                            "shard-0", **kw)


def test_sane_shard_passes(shard, tmp_path):
    assert run(shard, report_path=tmp_path / "r.txt").success
    assert "passed" in (tmp_path / "r.txt").read_text().splitlines()[0]


def test_missing_image_is_named(shard):
    with pytest.raises(CheckFailed) as info:
        run(shard, shard["records"][1:])
    assert "every assigned image has candidates" in info.value.report
    assert str(shard["ids"][0]) in info.value.report


def test_failed_images_count_as_covered(shard):
    assert run(shard, shard["records"][1:], failed_images=[shard["ids"][0]]).success


def test_empty_mask_and_wrong_size_fail(shard):
    h, w = shard["size"]
    recs = list(shard["records"])
    iid = recs[2][0]
    recs[2] = (iid, [mask_codec.encode(np.zeros((h, w), bool)), mask_codec.encode(np.ones((h + 1, w), bool))])
    with pytest.raises(CheckFailed) as info:
        run(shard, recs)
    rep = info.value.report
    assert "masks are non-empty" in rep and f"{iid}:0" in rep
    assert "every mask has its image's size" in rep and f"{iid}:1" in rep


def test_speckled_mask_and_too_many_candidates_fail(shard):
    from semires.checks import CandidateChecks

    h, w = shard["size"]
    noise = np.random.default_rng(0).random((h, w)) > 0.5
    recs = list(shard["records"])
    recs[0] = (recs[0][0], [mask_codec.encode(noise)] * 3)
    with pytest.raises(CheckFailed) as info:
        run(shard, recs, cfg=CandidateChecks(max_per_image=2))
    rep = info.value.report
    assert "no speckled masks" in rep and "2 candidates per image" in rep
