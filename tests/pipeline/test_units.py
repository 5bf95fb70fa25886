"""Small pieces of the pipeline glue, without services or training."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pipeline_helpers import ROOT


def test_configure_overrides_validates_and_adds_the_label_ratio_to_the_splits(tmp_path):
    out = tmp_path / "run" / "params.yaml"
    res = subprocess.run([sys.executable, "-m", "components.configure", "--base", str(ROOT / "params.yaml"), "--out",
                          str(out), "--set", "pipeline.label_ratio=0.02", "--set", "refine.strategy=cpi",
                          "--set", "semi.steps=7"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["pipeline"]["label_ratio"] == 0.02 and 0.02 in doc["split"]["ratios"]
    assert doc["refine"]["strategy"] == "cpi" and doc["semi"]["steps"] == 7
    assert list(doc)[:3] == ["data", "split", "pipeline"]  # the base file's order is kept

    bad = subprocess.run([sys.executable, "-m", "components.configure", "--base", str(ROOT / "params.yaml"), "--out",
                          str(tmp_path / "bad.yaml"), "--set", "refine.strateg=cpi"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert bad.returncode == 2 and "refine" in bad.stderr and "strateg" in bad.stderr
    assert not (tmp_path / "bad.yaml").exists()  # nothing half-valid is left behind


def test_params_hash_is_stable_and_sensitive():
    from semires.refine.config import RefineConfig
    from semires.runs import params_hash

    a = params_hash({"refine": RefineConfig()})
    assert a == params_hash({"refine": RefineConfig().model_dump()})
    assert a != params_hash({"refine": RefineConfig(strategy="cpi")})


def test_stage_tags_carry_commit_hash_and_dag_run(monkeypatch):
    from semires.runs import stage_tags

    monkeypatch.setenv("SEMIRES_DAG_RUN_ID", "manual__2025")
    tags = stage_tags("refine", {"refine": {"strategy": "iom"}})
    assert tags["semires.stage"] == "refine" and tags["semires.dag_run_id"] == "manual__2025"
    assert len(tags["semires.params_hash"]) == 12 and tags["semires.git_commit"]


def test_report_summary_and_scores(tmp_path):
    sys.path.insert(0, str(ROOT))
    from components.report import STAGES, scores, summary_markdown, training_time

    m = {"evaluate": {"val.n": 10, "val.mIoU": 50.0, "val.oIoU": 60.0, "testA.mIoU": 40.0, "testA.oIoU": 45.0},
         "burn_in": {"val.mIoU": 45.0, "val.oIoU": 55.0, "steps": 8},
         "refine": {"match_rate": 80.0, "delta_mIoU": 2.5, "delta_oIoU": 1.5, "improved": 3}}
    text = summary_markdown({"label_ratio": 0.1, "strategy": "iom+pwa"}, m)
    assert "| val | 10 | 50.00 | 60.00 |" in text and "| testA |" in text and "+5.00 mIoU" in text
    (tmp_path / "student").mkdir()
    (tmp_path / "student/metrics.json").write_text('{"train_s": 12.5, "steps": 6}')
    got = scores(m, training_time(tmp_path / "student"), training_time(tmp_path / "missing"))
    # the compared numbers, student first; counts (n, steps, improved) stay in the stage files
    assert list(got) == ["student.val.mIoU", "student.val.oIoU", "student.testA.mIoU", "student.testA.oIoU",
                         "teacher.val.mIoU", "teacher.val.oIoU", "gain.val.mIoU", "gain.val.oIoU",
                         "pseudo.lift.mIoU", "pseudo.lift.oIoU", "pseudo.match_rate", "time.student_train_s"]
    assert got["gain.val.mIoU"] == 5.0 and got["pseudo.lift.mIoU"] == 2.5 and got["time.student_train_s"] == 12.5
    assert STAGES[0] == "data" and "candidates" in STAGES and "evaluate" in STAGES and "report" not in STAGES


def test_report_puts_the_student_beside_supervised_only_on_the_same_splits():
    sys.path.insert(0, str(ROOT))
    from components.report import scores, summary_markdown

    m = {"evaluate": {"val.n": 10, "val.mIoU": 50.0, "val.oIoU": 60.0, "teacher.val.mIoU": 42.0,
                      "teacher.val.oIoU": 51.0, "teacher.val.n": 10},
         "burn_in": {"val.mIoU": 45.0, "val.oIoU": 55.0}}
    text = summary_markdown({"label_ratio": 0.1}, m)
    assert "| val | 42.00 | 50.00 | +8.00 |" in text and "| teacher |" not in text
    assert "student vs teacher" not in text  # one comparison, on the same split
    got = scores(m)  # the full-split teacher score wins over the burn-in's val-subset one
    assert got["teacher.val.mIoU"] == 42.0 and got["gain.val.mIoU"] == 8.0 and "student.teacher.mIoU" not in got


def test_report_sets_the_student_beside_both_supervised_baselines():
    sys.path.insert(0, str(ROOT))
    from components.report import scores, summary_markdown

    m = {"evaluate": {"val.n": 10, "val.mIoU": 50.0, "val.oIoU": 60.0, "teacher.val.mIoU": 42.0,
                      "teacher.val.oIoU": 51.0, "supervised.val.mIoU": 46.0, "supervised.val.oIoU": 57.0,
                      "supervised.val.n": 10}}
    text = summary_markdown({"label_ratio": 0.1}, m)
    assert "| val | 42.00 | 46.00 | 50.00 | +8.00 | +4.00 |" in text
    assert "| supervised |" not in text  # a baseline's scores are not a split of the student's
    got = scores(m)
    assert got["supervised.val.mIoU"] == 46.0 and got["gain_matched.val.mIoU"] == 4.0 and got["gain.val.mIoU"] == 8.0


def test_resource_usage_counts_cpu_and_memory_of_the_stage_body():
    sys.path.insert(0, str(ROOT))
    from components._stage import ResourceUsage

    usage = ResourceUsage.start()
    block = bytearray(64 * 2**20)  # 64 MiB touched: the peak resident memory holds it
    block[::4096] = b"x" * len(block[::4096])
    sum(i * i for i in range(2_000_000))  # CPU work in this process
    got = usage.since()
    assert set(got) == {"resource.wall_s", "resource.cpu_s", "resource.peak_rss_mib"}
    assert got["resource.cpu_s"] > 0 and got["resource.wall_s"] > 0 and got["resource.peak_rss_mib"] >= 64


def test_kill_switch_fires_once(tmp_path):
    target, marker = tmp_path / "shard-00001.npz", tmp_path / "killed"
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from components._stage import arm_kill_switch;"
            "arm_kill_switch('pseudo_label'); open(sys.argv[2], 'w').close(); time.sleep(30)")
    env = {"SEMIRES_KILL_AT": f"pseudo_label={tmp_path}/shard-*.npz", "SEMIRES_KILL_MARKER": str(marker),
           "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code, str(ROOT), str(target)], env=env, timeout=60, check=False)
    assert res.returncode == -9 and marker.is_file()
    again = subprocess.run([sys.executable, "-c", code.replace("time.sleep(30)", "print('ran through')"),
                            str(ROOT), str(target)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "ran through" in again.stdout


@pytest.mark.parametrize("value,expected", [("0.05", 0.05), ("true", True), ("[1, 2]", [1, 2]), ("iom", "iom")])
def test_override_values_are_yaml_scalars(value, expected):
    sys.path.insert(0, str(ROOT))
    from components.configure import apply_overrides

    assert apply_overrides({"a": {"b": 1}}, [f"a.c={value}"])["a"] == {"b": 1, "c": expected}
