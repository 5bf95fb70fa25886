"""Services down fail fast in one line; the error path's other classes: Typer's own exit codes pass through,
interrupts exit 130, a bug keeps its traceback and exits 1."""

from __future__ import annotations

import socket

import pytest
import typer
from fault_helpers import component, expect_error, run, temps, tree_digest

from semires.cli import run_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_stage_with_mlflow_down_fails_in_one_line_before_any_work(chain, tmp_path, case):
    case("service down", "components.split with MLFLOW_TRACKING_URI pointing at a closed port")
    uri = f"http://127.0.0.1:{_closed_port()}"
    out, metrics = tmp_path / "splits", tmp_path / "m.json"
    before = tree_digest(chain.index)
    res = run("-m", "components.split", "--index", chain.index, "--out", out, "--report", tmp_path / "r.txt",
              "--metrics", metrics, "--params", chain.params, MLFLOW_TRACKING_URI=uri)
    expect_error(case, res.returncode, res.stderr, 2, uri, "unreachable after 3 tries", "mlflow.enabled: false")
    assert not out.exists() and not metrics.exists() and not (tmp_path / "r.txt").exists() and not temps(tmp_path)
    assert tree_digest(chain.index) == before


def test_stage_with_tracking_off_runs_although_the_server_is_down(chain, tmp_path, capsys, monkeypatch, case):
    import yaml

    case("service down", "the same stage with mlflow.enabled: false (tracking off by the user)", "in-process")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    p = yaml.safe_load(chain.params.read_text())
    p["mlflow"]["enabled"] = False
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    out = tmp_path / "splits"
    code = component("split", "--index", chain.index, "--out", out, "--report", tmp_path / "r.txt",
                     "--metrics", tmp_path / "m.json", "--params", params)
    case.saw(code, "")
    assert code == 0 and (out / "50pct" / "labeled.txt").is_file(), capsys.readouterr().err[-2000:]


def test_services_status_exits_nonzero_when_down(tmp_path, case):
    case("service down", "`semires pipeline services status` with no services running")
    res = run("-m", "semires", "pipeline", "services", "status", "--state-dir", tmp_path / "state")
    case.saw(res.returncode, res.stdout.strip())
    assert res.returncode == 1 and "not running" in res.stdout and "Traceback" not in res.stderr


def test_mlflow_failure_mid_run_is_one_line(case):
    from mlflow.exceptions import MlflowException

    from semires.errors import user_error_message

    case("service down", "an MLflow call fails after its bounded retries (server lost mid-run)", "library")
    exc = MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/runs/log-batch failed with exception "
                          "HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded with url: ... "
                          "(Caused by NewConnectionError('Failed to establish a new connection: "
                          "[Errno 111] Connection refused'))\nmore detail")
    line = user_error_message(exc)
    case.saw(2, line)
    assert line is not None and "\n" not in line and "unreachable" in line and "mlflow.enabled: false" in line


def _app(exc: BaseException | None = None, code: int | None = None) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def go() -> None:
        if exc is not None:
            raise exc
        if code is not None:
            raise typer.Exit(code)

    return app


@pytest.mark.parametrize("what,exc,want", [
    ("Ctrl-C (KeyboardInterrupt) inside a command", KeyboardInterrupt(), 130),
    ("typer.Abort inside a command", typer.Abort(), 130),
    ("typer.Exit(3) from a command", None, 3),
    ("a pydantic ValidationError (bad value, not a SemiresError)", "pydantic", 2),
    ("disk full while writing (OSError ENOSPC)", OSError(28, "No space left on device", "/data/out.json"), 2),
], ids=["keyboard-interrupt", "abort", "exit-3", "validation-error", "disk-full"])
def test_error_path_classes(what, exc, want, capsys, case):
    case("error path", what, "in-process")
    if exc == "pydantic":
        from pydantic import ValidationError

        from semires.config import SplitConfig

        try:
            SplitConfig(ratios=[2.0])
        except ValidationError as err:
            exc = err
    code = run_app(_app(exc, code=3 if exc is None else None), [])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    case.saw(code, lines[0] if lines else "")
    assert code == want and "Traceback" not in err
    if want != 3:
        assert len(lines) == 1 and lines[0].startswith("error: ")
    if exc is not None and isinstance(exc, OSError):
        assert "/data/out.json" in lines[0] and "No space left" in lines[0]
    if what.startswith("a pydantic"):
        assert "ratios.0" in lines[0]


def test_a_bug_keeps_its_traceback(case):
    case("error path", "an internal error (ZeroDivisionError) propagates with its traceback (exit 1)", "in-process")
    with pytest.raises(ZeroDivisionError):
        run_app(_app(ZeroDivisionError("division by zero")), [])
    case.saw(1, "Traceback ... ZeroDivisionError")
    res = run("-c", "import sys, typer\nfrom semires.cli import run_app\napp = typer.Typer()\n"
              "@app.command()\ndef go():\n    1 / 0\nsys.exit(run_app(app, []))\n")
    assert res.returncode == 1 and "Traceback" in res.stderr and "ZeroDivisionError" in res.stderr
