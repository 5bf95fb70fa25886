"""gain_bench's report: results accumulate across work folders of the same data and budget."""

from __future__ import annotations

import json
from types import SimpleNamespace

from res_fixtures import load_benchmark

gb = load_benchmark("gain_bench")


def _raw(arm: str, seed: int, miou: float) -> dict:
    return {"arm": arm, "seed": seed, "eval": {"val": {"mIoU": miou}}, "train_s": 1.0, "steps": 10,
            "mechanism": {"grad_share_unsup": [0.1, 0.4]}}


def test_earlier_runs_are_carried_over_and_local_runs_replace_them(tmp_path):
    bench = SimpleNamespace(data_sum="abc", budget=gb.BUDGETS["cpu"])
    path = tmp_path / "gain_bench.json"
    path.write_text(json.dumps({"data_checksum": "abc", "budget_settings": gb.BUDGETS["cpu"],
                                "raw": [_raw("mt", 0, 40.0), _raw("mt", 1, 38.0), _raw("burn_in", 2, 25.0)]}))
    local = {"mt": {0: {"eval": {"val": {"mIoU": 41.0}}}}}
    carried = gb.carried_over(path, bench, local)
    assert set(carried) == {"mt", "burn_in"}
    assert set(carried["mt"]) == {1}  # seed 0 was measured here: the local run wins
    assert carried["mt"][1]["eval"]["val"]["mIoU"] == 38.0 and carried["mt"][1]["carried"]
    assert carried["mt"][1]["mechanism"] == {"grad_share_unsup": [0.1, 0.4]}


def test_runs_of_other_data_or_another_budget_are_not_carried_over(tmp_path):
    path = tmp_path / "gain_bench.json"
    path.write_text(json.dumps({"data_checksum": "abc", "budget_settings": gb.BUDGETS["cpu"],
                                "raw": [_raw("mt", 1, 38.0)]}))
    assert gb.carried_over(path, SimpleNamespace(data_sum="other", budget=gb.BUDGETS["cpu"]), {}) == {}
    assert gb.carried_over(path, SimpleNamespace(data_sum="abc", budget=gb.BUDGETS["cpu_long"]), {}) == {}
    assert gb.carried_over(tmp_path / "missing.json", SimpleNamespace(data_sum="abc", budget={}), {}) == {}


def test_a_new_file_format_of_the_same_data_is_recognised_by_identical_scores(tmp_path):
    path = tmp_path / "gain_bench.json"
    path.write_text(json.dumps({"data_checksum": "old-format", "budget_settings": gb.BUDGETS["cpu"],
                                "raw": [_raw("burn_in", 0, 33.35), _raw("mt", 0, 41.0)]}))
    bench = SimpleNamespace(data_sum="new-format", budget=gb.BUDGETS["cpu"])
    same = {"burn_in": {0: {"eval": {"val": {"mIoU": 33.35}}}}}
    assert set(gb.carried_over(path, bench, same)) == {"mt"}
    other = {"burn_in": {0: {"eval": {"val": {"mIoU": 33.0}}}}}
    assert gb.carried_over(path, bench, other) == {}
    assert gb.carried_over(path, bench, {}) == {}  # nothing to compare: not carried


def test_the_long_budget_shares_the_work_folder_and_differs_only_in_the_semi_run():
    cpu, long_ = gb.BUDGETS["cpu"], gb.BUDGETS["cpu_long"]
    assert long_["folder"] == "cpu"
    assert long_["semi"]["steps"] == 3 * cpu["semi"]["steps"]
    assert {k: v for k, v in long_.items() if k not in ("semi", "folder")} == {k: v for k, v in cpu.items()
                                                                              if k != "semi"}


def test_settings_added_later_key_a_run_only_when_they_are_set():
    plain = gb.SemiConfig(steps=10)
    assert not set(gb.LATER_SEMI_FIELDS) & set(gb.semi_key(plain))  # earlier run folders keep their names
    comp = gb.semi_key(gb.SemiConfig(steps=10, ref_consensus=True, ref_competition=True))
    assert comp["ref_competition"] is True and "competing_refs" not in comp  # at its default
    assert gb.semi_key(gb.SemiConfig(steps=10, ref_consensus=True, ref_competition=True, competing_refs=2))[
        "competing_refs"] == 2
