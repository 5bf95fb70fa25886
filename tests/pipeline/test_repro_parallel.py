"""scripts/repro_parallel.py on a small real DVC project: independent stages run side by side, the
result is what `dvc repro` records, a rerun redoes nothing, a failed stage stops what depends on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "repro_parallel.py"
BIN = Path(sys.executable).parent

# b and c each wait (at most 60 s) until the other has started: they pass only when run side by side
WAIT_FOR = "for i in $(seq 600); do [ -e {other} ] && break; sleep 0.1; done; [ -e {other} ]"


def stage(cmd: str, deps: list[str], out: str) -> dict:
    return {"cmd": cmd, "deps": deps, "outs": [out]}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    (tmp_path / "src.txt").write_text("x\n")
    stages = {
        "a": stage("cat src.txt > a.txt", ["src.txt"], "a.txt"),
        "b": stage(f"touch b.started; {WAIT_FOR.format(other='c.started')} && cat a.txt > b.txt", ["a.txt"], "b.txt"),
        "c": stage(f"touch c.started; {WAIT_FOR.format(other='b.started')} && cat a.txt > c.txt", ["a.txt"], "c.txt"),
        "d": stage("cat b.txt c.txt > d.txt", ["b.txt", "c.txt"], "d.txt"),
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return tmp_path


def repro(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_independent_stages_run_side_by_side_and_dvc_records_them(project: Path):
    res = repro(project, "--jobs", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (project / "d.txt").read_text() == "x\nx\n"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == ["a", "b", "c", "d"]
    status = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=project, capture_output=True, text=True,
                            check=True)
    assert json.loads(status.stdout) == {}
    times = json.loads((project / ".dvc/tmp/repro_parallel.json").read_text())
    assert sorted(times) == ["a", "b", "c", "d"]
    # a rerun: every stage is checked, none is run again, and the skips leave the recorded times alone
    again = repro(project, "--jobs", "2")
    assert again.returncode == 0
    assert "Running stage" not in again.stdout and again.stdout.count("didn't change") == 4
    assert json.loads((project / ".dvc/tmp/repro_parallel.json").read_text()) == times


def test_one_job_runs_one_stage_at_a_time(project: Path):
    """With --jobs 1 the waiting stages never meet: the first of them fails and nothing after it starts."""
    res = repro(project, "--jobs", "1", "--progress-s", "0")
    assert res.returncode == 1
    failed = "b" if (project / "b.started").exists() else "c"
    assert f"FAILED {failed}" in res.stdout and "stage " + failed + " failed" in res.stdout
    assert not (project / "d.txt").exists()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == ["a"]  # the finished stage is recorded; a rerun starts after it


def test_a_target_runs_only_what_it_needs(project: Path):
    (project / "c.started").touch()  # b then has nobody to wait for
    res = repro(project, "--jobs", "2", "b")
    assert res.returncode == 0, res.stdout
    assert (project / "b.txt").exists() and not (project / "c.txt").exists() and not (project / "d.txt").exists()
    assert "all 2 stages up to date" in res.stdout
