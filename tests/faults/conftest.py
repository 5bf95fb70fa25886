"""Fixtures of the fault-injection suite: a reference run of the stage chain, entry-point runners, the case table.

Every test here is one or more *fault cases*: bad input, a damaged artifact, a kill, two runs at once, a
service down. Each declares its case with :func:`fault_helpers.Case` (class and what is done) and records
what happened (exit code, the error line); with ``SEMIRES_FAULT_TABLE=<path>`` the session writes every
case and its outcome to that JSON file (``tests/faults/make_table.py`` builds
``benchmarks/results/fault_cases.json`` from it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests" / "pipeline")]

from fault_helpers import Chain, component

_OUTCOMES: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    props = dict(item.user_properties)
    if "fault_case" not in props or (rep.when != "call" and rep.passed):
        return
    row = _OUTCOMES.setdefault(item.nodeid, {"id": item.nodeid.split("tests/faults/", 1)[-1], **props["fault_case"]})
    row.update(props.get("fault_observed", {}))
    if rep.when == "call" or rep.failed:
        row["passed"] = rep.passed and row.get("passed", True)
        if rep.failed:
            row["failure"] = str(rep.longrepr).strip().splitlines()[-1][:300] if rep.longrepr else "failed"


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("SEMIRES_FAULT_TABLE")
    if out and _OUTCOMES:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(sorted(_OUTCOMES.values(), key=lambda r: r["id"]), indent=1) + "\n")


@pytest.fixture
def case(request):
    """``case(cls, what)`` declares the test's fault case; ``.saw(code=..., message=...)`` records what happened."""
    from fault_helpers import Case

    return Case(request.node)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No tracking server unless a test sets one; no kill switch from the outer environment."""
    for k in ("MLFLOW_TRACKING_URI", "SEMIRES_KILL_AT", "SEMIRES_KILL_MARKER", "SEMIRES_PARENT_RUN_ID",
              "SEMIRES_DEBUG"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="session")
def fault_params(tmp_path_factory) -> Path:
    """The pipeline tests' params (RefShapes 'tiny', a tiny model, a few steps), tracking off, every section valid."""
    from pipeline_helpers import merged_test_params

    p = merged_test_params()
    p["checks"].setdefault("labels", {})["max_fg_frac"] = 1.0  # a few-step teacher may paint everything
    path = tmp_path_factory.mktemp("fault_params") / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def chain(tmp_path_factory, fault_params) -> Chain:
    """One uninterrupted run of every stage (data .. refine) through the components, in this process:
    the reference that killed and rerun stages must reproduce exactly (read-only)."""
    c = Chain(tmp_path_factory.mktemp("chain"), fault_params)
    for stage in ("data", "split", "candidates0", "candidates1", "candidates_merge", "burn_in", "pseudo_label",
                  "refine"):
        code = component(*c.argv(stage))
        assert code == 0, f"reference stage {stage} failed"
    return c
