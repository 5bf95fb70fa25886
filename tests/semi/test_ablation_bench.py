"""The ablation benchmark script runs end to end (smoke budget) and writes its table with MLflow runs."""

from __future__ import annotations

import json

import pytest
from res_fixtures import load_benchmark


def _bench():
    return load_benchmark("ablation_bench")


@pytest.mark.slow
def test_ablation_bench_smoke_budget(tmp_path, monkeypatch):
    # mlflow.set_tracking_uri in an earlier test also exports MLFLOW_TRACKING_URI, which the
    # benchmark would follow instead of its own <work>/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bench = _bench()
    rc = bench.main(["--budget", "smoke", "--ratios", "0.5", "--seeds", "0", "--variants", "supervised,mt", "--no-quality",
                     "--work", str(tmp_path / "work"), "--out-dir", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "ablation_bench_smoke.json").read_text())
    assert doc["budget"] == "smoke" and doc["columns"][0] == "labeled"
    assert [r[1] for r in doc["rows"]] == ["supervised only", "mean teacher"]
    assert all(isinstance(v, float) for v in doc["rows"][0][3:9])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'work' / 'smoke' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["semires-ablation"])
    names = set(runs["tags.mlflow.runName"])
    assert {"ablation_bench (smoke)", "burn_in 50pct_s0", "semi mt 50pct_s0", "eval mt 50pct_s0"} <= names
    # a rerun finds every run finished and rewrites the same table
    assert bench.main(["--budget", "smoke", "--ratios", "0.5", "--seeds", "0", "--variants", "supervised,mt", "--no-quality",
                       "--work", str(tmp_path / "work"), "--out-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "ablation_bench_smoke.json").read_text())["rows"] == doc["rows"]


@pytest.mark.slow
def test_ablation_bench_semi_ratios_limit_the_semi_runs(tmp_path):
    """--semi-ratios: the other ratios get only their burn-in; a non-small budget never writes the
    README's main results file."""
    bench = _bench()
    assert bench.main(["--budget", "smoke", "--ratios", "0.25,0.5", "--semi-ratios", "0.5", "--seeds", "0",
                       "--variants", "supervised,mt", "--no-quality", "--work", str(tmp_path / "work"),
                       "--out-dir", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "ablation_bench_smoke.json").read_text())
    assert [(r[0], r[1]) for r in doc["rows"]] == [("25%", "supervised only"), ("50%", "supervised only"),
                                                   ("50%", "mean teacher")]
    assert not list((tmp_path / "work" / "smoke" / "runs" / "25pct_s0").glob("mt-*"))
    assert not (tmp_path / "ablation_bench.json").exists()
    assert bench.result_name("ablation_bench", "small") == "ablation_bench.json"
    assert bench.result_name("pseudo_label_quality", "full") == "pseudo_label_quality_full.json"
    assert bench.result_name("ablation_bench", "small", 4) == "ablation_bench_stride4.json"
    assert bench.result_name("pseudo_label_quality", "full", 4) == "pseudo_label_quality_full_stride4.json"
    assert bench.budget_settings("full", 4)["model"]["detail_stride"] == 4
    assert "detail_stride" not in bench.BUDGETS["full"]["model"]   # the override copies, never edits the budget
    assert bench.result_name("pseudo_label_quality", "small", 4, 18) == "pseudo_label_quality_stride4_burn18.json"
    longer = bench.budget_settings("small", 4, 18)
    assert longer["burn_in"]["epochs"] == 18 and bench.BUDGETS["small"]["burn_in"]["epochs"] == 6
    # another logit stride trains its own burn-in and writes beside, never over, the stride-2 table
    assert bench.main(["--budget", "smoke", "--detail-stride", "4", "--ratios", "0.5", "--seeds", "0",
                       "--variants", "supervised", "--no-quality", "--work", str(tmp_path / "work"),
                       "--out-dir", str(tmp_path)]) == 0
    s4 = json.loads((tmp_path / "ablation_bench_smoke_stride4.json").read_text())
    assert "no detail head" in s4["notes"] and s4["budget_settings"]["model"]["detail_stride"] == 4
    assert len(list((tmp_path / "work" / "smoke" / "runs" / "50pct_s0").glob("supervised-*"))) == 2
    assert json.loads((tmp_path / "ablation_bench_smoke.json").read_text())["rows"] == doc["rows"]
