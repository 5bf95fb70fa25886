"""`semires pipeline check ...`: exit 0 with a summary on good data, exit 2 with the report on bad data."""

from __future__ import annotations

import json
from pathlib import Path

from semires.cli import run_app
from semires.cli.pipeline import app


def test_check_data_cli(refshapes_tiny, tmp_path, capsys):
    split = str(refshapes_tiny["splits"][0.5])
    assert run_app(app, ["check", "data", "--index", str(refshapes_tiny["index"]), "--split", split,
                         "--params", str(tmp_path / "none.yaml")]) == 0
    assert "passed" in capsys.readouterr().out

    doc = json.loads(Path(refshapes_tiny["index"]).read_text())
    doc["image_root"] = str(Path(refshapes_tiny["refer_dir"]) / "images")
    doc["refs"][0]["sentences"][0]["sent"] = ""
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps(doc))
    report = tmp_path / "report.txt"
    code = run_app(app, ["check", "data", "--index", str(bad), "--report", str(report),
                         "--params", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {bad}: data check 'index_and_splits' FAILED")
    assert "FAIL [sentences] expressions are non-empty" in err and report.is_file()
