"""One front door: the command line and the components open candidates (and split folders) through the
same library functions, with the same defaults and the same errors."""

from __future__ import annotations

import inspect

import pytest
from cand_helpers import BlobGenerator

from components import _stage
from components import refine as refine_component
from semires.candidates.source import open_candidates
from semires.candidates.store import CandidateStore, generate_shard, merge
from semires.cli import main
from semires.data.index import RefIndex
from semires.data.splits import ratio_dir
from semires.errors import DataError, SemiresError
from semires.train.semi_config import SemiConfig


def test_open_candidates_opens_only_what_is_needed_with_the_store_defaults(refshapes_tiny, tmp_path):
    assert open_candidates(None, needed=False) is None
    assert open_candidates(tmp_path / "nowhere", needed=False) is None  # not opened, so not checked
    with pytest.raises(SemiresError) as err:
        open_candidates(None, needed=True)
    assert "\n" not in str(err.value) and "--candidates" in str(err.value)
    ix = RefIndex.load(refshapes_tiny["index"])
    generate_shard(ix, ix.image_ids()[:3], 0, 1, tmp_path / "store", BlobGenerator(), progress=False)
    merge(tmp_path / "store", 1)
    store = open_candidates(tmp_path / "store", needed=True)
    defaults = inspect.signature(CandidateStore).parameters
    assert isinstance(store, CandidateStore) and len(store) == 3
    assert store.cache_size == defaults["cache_size"].default
    assert store.cache_bytes == int(defaults["cache_mb"].default * 2**20)
    # the student's bound comes from params (semi.candidate_cache_mb), with the store's default as its default
    assert SemiConfig().candidate_cache_mb == defaults["cache_mb"].default
    assert open_candidates(tmp_path / "store", needed=True, cache_mb=3).cache_bytes == 3 * 2**20


def test_cli_and_component_fail_alike_without_candidates(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("refine:\n  strategy: cpi\n")
    common = ["--index", str(tmp_path / "index.json"), "--pseudo", str(tmp_path / "pseudo"),
              "--out", str(tmp_path / "refined"), "--params", str(params)]
    assert main(["semi", "refine", *common]) == 2
    cli_err = capsys.readouterr().err.strip()
    code = _stage.cli(refine_component.APP, [*common, "--report", str(tmp_path / "r.txt"),
                                             "--metrics", str(tmp_path / "m.json")])
    component_err = capsys.readouterr().err.strip()
    assert code == 2 and cli_err == component_err
    assert cli_err.count("\n") == 0 and "needs SAM candidates" in cli_err
    assert not (tmp_path / "refined").exists()


def test_ratio_dir_names_the_missing_split(tmp_path):
    (tmp_path / "10pct").mkdir()
    assert ratio_dir(tmp_path, 0.1) == tmp_path / "10pct"
    with pytest.raises(DataError, match="add 0.05 to split.ratios") as err:
        ratio_dir(tmp_path, 0.05)
    assert str(tmp_path / "5pct") in str(err.value)
