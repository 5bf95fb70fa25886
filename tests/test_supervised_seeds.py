"""benchmarks/supervised_seeds.py: runs of one setting grouped, with mean, min and max per group."""

from __future__ import annotations

import json

import pytest
from res_fixtures import load_benchmark


def _run_file(path, seed, val, wall_s, ratio=1.0):
    ev = {s: {"mIoU": val + d, "oIoU": val - 2} for s, d in (("val", 0.0), ("testA", 1.0), ("testB", -1.0))}
    raw = [{"ratio": ratio, "steps": 2870, "eval": ev, "wall_s": wall_s, "train_images_per_s": 170.0,
            "config": {"seed": seed, "epochs": 7, "steps_per_epoch": 410}}]
    path.write_text(json.dumps({"raw": raw, "machine": "test cpu", "date": "2026-11-27"}))
    return path


def test_groups_list_every_run_then_the_mean_and_range(tmp_path, monkeypatch):
    seeds = load_benchmark("supervised_seeds")
    a = [_run_file(tmp_path / f"a{s}.json", s, v, 570.0) for s, v in ((1, 69.0), (0, 71.0), (2, 70.5))]
    b = _run_file(tmp_path / "b.json", 0, 67.5, 600.0)
    out = tmp_path / "seeds.json"
    monkeypatch.setattr("sys.argv", ["x", "--group", "new=" + ",".join(map(str, a)), "--group", f"old={b}",
                                     "--out", str(out), "--notes", "n"])
    seeds.main()
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert [r[1] for r in rows[:3]] == [0, 1, 2]              # by seed
    assert rows[0][2] == "2870 (7 x 410)" and rows[0][3] == 71.0
    assert rows[3][0].startswith("**new: mean of 3 (median wall)") and rows[3][3] == pytest.approx(70.2)
    assert rows[3][7] == 9.5 and rows[3][8] == "val 69.0-71.0"
    assert len(rows) == 5 and rows[4][0] == "old"          # one run: no summary row
    assert doc["machine"] == "test cpu" and doc["notes"] == "n"


def test_a_file_without_a_100_percent_run_is_refused(tmp_path, monkeypatch):
    seeds = load_benchmark("supervised_seeds")
    f = _run_file(tmp_path / "small.json", 0, 30.0, 100.0, ratio=0.1)
    monkeypatch.setattr("sys.argv", ["x", "--group", f"g={f}", "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="no 100 % run"):
        seeds.main()


def test_render_keeps_the_groups_in_the_order_given(tmp_path, monkeypatch):
    seeds = load_benchmark("supervised_seeds")
    files = {k: _run_file(tmp_path / f"{k}.json", 0, v, 500.0) for k, v in (("zeta", 60.0), ("alpha", 70.0))}
    out = tmp_path / "seeds.json"
    monkeypatch.setattr("sys.argv", ["x", "--group", f"zeta={files['zeta']}", "--group", f"alpha={files['alpha']}",
                                     "--out", str(out)])
    seeds.main()
    monkeypatch.setattr("sys.argv", ["x", "--render", "--out", str(out)])
    seeds.main()
    assert [r[0] for r in json.loads(out.read_text())["rows"]] == ["zeta", "alpha"]
