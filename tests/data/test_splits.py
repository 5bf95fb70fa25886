import pytest

from semires.data.index import RefIndex, build_index
from semires.data.splits import load_split, make_split, make_splits, ratio_name


def test_ratio_names():
    assert [ratio_name(r) for r in (0.001, 0.01, 0.05, 0.1, 1.0)] == ["0.1pct", "1pct", "5pct", "10pct", "100pct"]


def test_split_is_a_deterministic_partition():
    ids = list(range(1000, 1400))
    a, b = make_split(ids, 0.05, seed=0), make_split(ids, 0.05, seed=0)
    c = make_split(ids, 0.05, seed=1)
    assert a == b and a.labeled != c.labeled
    assert len(a.labeled) == 20 and not set(a.labeled) & set(a.unlabeled)
    assert sorted(a.labeled + a.unlabeled) == ids
    # a smaller ratio with the same seed is a subset of a larger one
    assert set(make_split(ids, 0.01, 0).labeled) <= set(a.labeled)
    assert len(make_split(ids, 0.001, 0).labeled) == 1  # never empty


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError):
        make_split([1, 2, 3], ratio, 0)


def test_written_splits_cover_train_images(mini_refer, tmp_path):
    idx = RefIndex.load(build_index(mini_refer, mini_refer / "images", tmp_path / "index.json", progress=False))
    out = make_splits(idx, [0.25, 0.5], seed=3, out_dir=tmp_path / "splits")
    s = load_split(out[0.25])
    assert s.ratio == 0.25 and s.seed == 3
    assert sorted(s.labeled + s.unlabeled) == idx.image_ids("train")
    assert (out[0.5] / "labeled.txt").read_text().count("\n") == 3  # 5 train images, half rounds up


def test_default_refshapes_one_percent_split(refshapes_default, tmp_path):
    idx = RefIndex.load(refshapes_default["index"])
    one = make_splits(idx, [0.01], seed=0, out_dir=tmp_path / "a")[0.01]
    again = make_splits(idx, [0.01], seed=0, out_dir=tmp_path / "b")[0.01]
    other = make_splits(idx, [0.01], seed=1, out_dir=tmp_path / "c")[0.01]
    s, s2, s3 = load_split(one), load_split(again), load_split(other)
    assert len(s.labeled) > 0 and idx.ref_ids("train", s.labeled)
    assert not set(s.labeled) & set(s.unlabeled)
    assert (one / "labeled.txt").read_bytes() == (again / "labeled.txt").read_bytes() and s == s2
    assert s3.labeled != s.labeled
