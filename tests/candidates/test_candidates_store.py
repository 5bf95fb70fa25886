"""Sharded candidate storage: deterministic shards, rerun after a kill, damaged shards, corrupt images,
the loader and its resizing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cand_helpers import BlobGenerator
from typer.testing import CliRunner

from semires.candidates.store import CandidateStore, generate_shard, merge, shard_ids, shard_name, shard_of
from semires.data.index import RefIndex
from semires.data.masks import nearest_resize
from semires.engine.transforms import resize_mask
from semires.errors import DataError, SemiresError

N = 3


@pytest.fixture(scope="module")
def index(refshapes_tiny):
    return RefIndex.load(refshapes_tiny["index"])


def run_all(index, out, gen=None, num_shards=N, **kw):
    gen = gen or BlobGenerator()
    entries = [generate_shard(index, index.image_ids(), k, num_shards, out, gen, progress=False, **kw)
               for k in range(num_shards)]
    merge(out, num_shards)
    return gen, entries


@pytest.fixture(scope="module")
def reference_store(index, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref_store")
    run_all(index, out)
    return out


def test_sharding_is_a_deterministic_partition(index):
    ids = index.image_ids()
    parts = [shard_ids(ids, k, N) for k in range(N)]
    assert sorted(i for p in parts for i in p) == sorted(ids)
    assert all(parts)  # every shard gets images on this set
    assert [shard_of(i, N) for i in ids] == [shard_of(i, N) for i in ids]
    with pytest.raises(SemiresError, match="outside"):
        shard_ids(ids, N, N)


def test_store_round_trip_and_resize(index, reference_store):
    store = CandidateStore(reference_store)
    assert store.image_ids == index.image_ids()
    gen = BlobGenerator()
    for iid in index.image_ids()[:5]:
        want = gen.generate(index.load_image(iid))
        got = store.masks(iid)
        assert got.dtype == torch.bool and torch.equal(got, torch.from_numpy(want.masks))  # RLE decode == mask
        np.testing.assert_allclose(store.scores(iid), want.scores, atol=1e-6)
        rec = store.record(iid)
        assert [c["area"] for c in rec["candidates"]] == want.masks.reshape(len(want), -1).sum(1).tolist()
        for size in ((32, 48), (100, 77), (160, 129)):  # down, mixed, up: torch's pixel-centre nearest
            resized = store.masks(iid, size=size)
            ref = torch.nn.functional.interpolate(got[None].float(), size=size, mode="nearest-exact")[0].bool()
            assert resized.shape == (len(want), *size) and torch.equal(resized, ref)
        # candidates land on the same pixels as a truth mask resized for training
        for side in (24, 50, 64):
            for k in range(min(3, len(got))):
                assert np.array_equal(store.masks(iid, size=side)[k].numpy(), resize_mask(got[k].numpy(), side))
    # pixel centres: a 2x downscale keeps the odd rows / columns (PIL's NEAREST does the same there)
    m = np.zeros((1, 8, 8), bool)
    m[0, 1::2, 1::2] = True
    assert nearest_resize(m, (4, 4)).all() and not nearest_resize(~m, (4, 4)).any()
    assert store.masks(index.image_ids()[0]) is store.masks(index.image_ids()[0])  # LRU hit
    with pytest.raises(DataError, match="no candidates"):
        store.masks(10 ** 9)


def test_one_generation_per_image_not_per_ref(index, tmp_path):
    gen, _ = run_all(index, tmp_path)
    assert gen.calls == len(index.images) < len(index.refs)


def test_kill_midway_then_rerun_redoes_only_unfinished_shards(index, reference_store, tmp_path):
    ids = index.image_ids()
    generate_shard(index, ids, 0, N, tmp_path, BlobGenerator(), progress=False)
    done = tmp_path / "shards" / f"{shard_name(0, N)}.jsonl"
    mtime = done.stat().st_mtime_ns
    with pytest.raises(KeyboardInterrupt):
        generate_shard(index, ids, 1, N, tmp_path, BlobGenerator(fail_after=2), progress=False)
    assert not (tmp_path / "shards" / f"{shard_name(1, N)}.jsonl").exists()  # nothing half-written
    assert not (tmp_path / "entries" / f"{shard_name(1, N)}.json").exists()
    assert not list((tmp_path / "shards").glob(".tmp-*"))
    with pytest.raises(SemiresError, match="missing"):
        merge(tmp_path, N)
    gen = BlobGenerator()
    entries = [generate_shard(index, ids, k, N, tmp_path, gen, progress=False) for k in range(N)]
    merge(tmp_path, N)
    assert [e["skipped"] for e in entries] == [True, False, False]
    assert gen.calls == len(shard_ids(ids, 1, N)) + len(shard_ids(ids, 2, N))
    assert done.stat().st_mtime_ns == mtime
    assert (tmp_path / "manifest.json").read_bytes() == (reference_store / "manifest.json").read_bytes()


_CHILD = """
import sys
sys.path[:0] = {paths!r}
from cand_helpers import BlobGenerator
from semires.candidates.store import generate_shard
from semires.data.index import RefIndex
ix = RefIndex.load({index!r})
generate_shard(ix, ix.image_ids(), 1, {n}, {out!r}, BlobGenerator(sleep=0.5), progress=False)
"""


def test_sigkill_leaves_no_shard_and_rerun_completes(index, refshapes_tiny, reference_store, tmp_path):
    code = _CHILD.format(paths=[str(Path(__file__).parent)], index=str(refshapes_tiny["index"]), n=N,
                         out=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "shards").glob(".tmp-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "child ended before it was killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list((tmp_path / "shards").glob(".tmp-*"))  # killed while writing
    assert not (tmp_path / "entries").exists() or not list((tmp_path / "entries").iterdir())
    run_all(index, tmp_path)
    assert not list((tmp_path / "shards").glob(".tmp-*"))  # the stale temp file was cleared
    assert (tmp_path / "manifest.json").read_bytes() == (reference_store / "manifest.json").read_bytes()


def test_damaged_shard_is_redone_and_merge_refuses_it(index, tmp_path):
    ids = index.image_ids()
    run_all(index, tmp_path)
    f = tmp_path / "shards" / f"{shard_name(2, N)}.jsonl"
    good = f.read_bytes()
    f.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(SemiresError, match="checksum"):
        merge(tmp_path, N)
    with pytest.raises(DataError, match="checksum"):
        CandidateStore(tmp_path, verify=True)
    gen = BlobGenerator()
    entries = [generate_shard(index, ids, k, N, tmp_path, gen, progress=False) for k in range(N)]
    assert [e["skipped"] for e in entries] == [True, True, False]
    assert gen.calls == len(shard_ids(ids, 2, N)) and f.read_bytes() == good
    merge(tmp_path, N)


def test_changed_generator_settings_redo_the_shard(index, tmp_path):
    ids = index.image_ids()
    generate_shard(index, ids, 0, 1, tmp_path, BlobGenerator(), progress=False)

    class Other(BlobGenerator):
        name = "blob-test-v2"

    assert not generate_shard(index, ids, 0, 1, tmp_path, Other(), progress=False)["skipped"]


@pytest.fixture
def corrupt_index(refshapes_tiny, tmp_path):
    """A copy of the tiny index whose first image file is truncated."""
    src = Path(refshapes_tiny["refer_dir"])
    shutil.copytree(src / "images", tmp_path / "images")
    doc = json.loads(Path(refshapes_tiny["index"]).read_text())
    doc["image_root"] = "images"
    (tmp_path / "index.json").write_text(json.dumps(doc))
    ix = RefIndex.load(tmp_path / "index.json")
    bad_id = ix.image_ids()[0]
    p = ix.image_path(bad_id)
    p.write_bytes(p.read_bytes()[:100])
    return ix, bad_id


def test_corrupt_image_fails_the_shard_with_its_reason(corrupt_index, tmp_path):
    ix, bad = corrupt_index
    k = shard_of(bad, N)
    out = tmp_path / "store"
    with pytest.raises(DataError) as info:
        generate_shard(ix, ix.image_ids(), k, N, out, BlobGenerator(), progress=False)
    assert f"image {bad}" in str(info.value) and "allow_failures" in str(info.value)
    fails = json.loads((out / "failures" / f"{shard_name(k, N)}.json").read_text())
    assert [f["image_id"] for f in fails] == [bad]
    assert fails[0]["file"] == str(ix.image_path(bad)) and "corrupt or unreadable" in fails[0]["reason"]
    assert not (out / "shards" / f"{shard_name(k, N)}.jsonl").exists()
    assert not (out / "entries" / f"{shard_name(k, N)}.json").exists()


def test_corrupt_image_is_skipped_under_allow_failures(corrupt_index, tmp_path):
    ix, bad = corrupt_index
    run_all(ix, tmp_path, allow_failures=True)
    store = CandidateStore(tmp_path, verify=True)
    assert bad not in store and len(store) == len(ix.images) - 1
    assert [f["image_id"] for f in json.loads((tmp_path / "failures.json").read_text())] == [bad]


def test_cli_generate_merge_recall_and_exit_codes(corrupt_index, refshapes_tiny, tmp_path):
    from semires.cli.candidates import app

    runner = CliRunner()
    params = tmp_path / "params.yaml"
    params.write_text("candidates:\n  num_shards: 2\n  embedded:\n    split_max_regions: 0\n")
    out = tmp_path / "store"
    for k in range(2):
        res = runner.invoke(app, ["generate", "--index", str(refshapes_tiny["index"]), "--shard", str(k),
                                  "--out", str(out), "--params", str(params)])
        assert res.exit_code == 0, res.output
        assert "stand-in for SAM" in res.output
    res = runner.invoke(app, ["merge", "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0 and "candidates/image" in res.output, res.output
    res = runner.invoke(app, ["recall", "--index", str(refshapes_tiny["index"]), "--candidates", str(out),
                              "--out", str(tmp_path / "recall.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "recall.json").read_text())["recall@0.5"] > 50
    ix, bad = corrupt_index
    res = runner.invoke(app, ["generate", "--index", str(ix.path), "--shard", str(shard_of(bad, 2)),
                              "--out", str(tmp_path / "bad"), "--params", str(params)])
    assert res.exit_code != 0 and isinstance(res.exception, DataError)


def test_cache_keeps_within_its_byte_budget(index, reference_store):
    ids = index.image_ids()[:6]
    one = CandidateStore(reference_store).masks(ids[0]).numel()
    store = CandidateStore(reference_store, cache_mb=2.5 * one / 2**20)
    for i in ids:
        assert store.masks(i, 32).shape[1:] == (32, 32)  # an int size is a square side
        store.masks(i)
    assert 0 < store._cached_bytes <= 2.5 * one + 1 and len(store._cache) >= 2
    assert store.masks(ids[-1]) is store.masks(ids[-1])
