"""The pipeline definitions agree with each other and with the code (no services, no training)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from pipeline_helpers import ROOT, merged_test_params, project_files

from semires.stages import STAGES as TABLE
from semires.stages import command

STAGES = [st.name for st in TABLE]


def _dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_params_yaml_is_complete_and_valid():
    from semires.config import load_params
    from semires.pipeline import section_models, validate_params

    params = load_params(ROOT / "params.yaml")
    validate_params(params)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    models = section_models()
    assert set(raw) == set(models), "params.yaml must list every section (DVC tracks params per key)"
    for name, model in models.items():  # every field written out, so a changed value is visible to DVC
        missing = set(model.model_fields) - set(raw[name])
        assert not missing, f"params.yaml section {name} lacks {sorted(missing)}"


def test_test_params_are_valid(tmp_path):
    from semires.config import load_params
    from semires.pipeline import validate_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged_test_params()))
    validate_params(load_params(tmp_path / "params.yaml"))


def test_dvc_stages_shards_and_commands():
    dvc = _dvc()
    assert STAGES[:2] == ["data", "split"] and STAGES[-1] == "report"
    assert list(dvc["stages"]) == STAGES
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    from semires.candidates.store import shard_name

    shards = next(v["shards"] for v in dvc["vars"] if "shards" in v)
    n = params["candidates"]["num_shards"]
    assert shards == {shard_name(k, n): k for k in range(n)}, "dvc.yaml shards != candidates.num_shards"
    for name, st in dvc["stages"].items():
        body = st.get("do", st)
        assert f"python -m components.{name} " in body["cmd"]
        assert (ROOT / "components" / f"{name}.py").is_file()


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_code_deps_cover_the_component_imports(stage):
    """Every semires module a component imports at module level lies under one of its DVC deps."""
    body = _dvc()["stages"][stage]
    deps = [d for d in body.get("do", body)["deps"] if not d.startswith("$")]
    ignored = ("semires/__init__.py", "semires/cli/", "semires/errors.py", "semires/runs.py", "semires/pipeline.py",
               "semires/tracking.py", "semires/config.py", "semires/io.py", "components/__init__.py")
    uncovered = []
    for f in sorted(project_files(f"components.{stage}", module_level_only=True)):
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith(ignored) or rel.endswith("__init__.py"):
            continue
        if not any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps):
            uncovered.append(rel)
    assert not uncovered, f"dvc.yaml stage {stage} should depend on {uncovered}"


def _dag_task_ids() -> list[str]:
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]);"
            "from airflow.dag_processing.dagbag import BundleDagBag;"
            "b = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1]);"
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': sorted(b.dag_ids),"
            "'tasks': [t.task_id for t in b.dags['semires_pipeline'].tasks] if 'semires_pipeline' in b.dags "
            "else []}))")
    return code


def test_dagbag_imports_without_errors(tmp_path):
    import json

    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags")}
    out = subprocess.run([sys.executable, "-c", _dag_task_ids(), str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["errors"] == {}
    assert doc["dags"] == ["semires_compare", "semires_pipeline"]
    for stage in STAGES:
        assert stage in doc["tasks"], f"the DAG has no task {stage}"


def test_ruff_airflow_rules_clean():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "AIR", "dags/"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dag_files_have_no_heavy_top_level_imports():
    heavy = {"torch", "semires", "mlflow", "great_expectations", "dvc", "kfp", "pandas", "numpy"}
    import ast

    for f in (ROOT / "dags").glob("*.py"):
        for node in ast.parse(f.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in heavy], f"{f.name} imports {names} at top level"


def test_kfp_compiles_with_every_stage(tmp_path):
    sys.path.insert(0, str(ROOT / "infra" / "kfp"))
    try:
        from pipeline import compile_pipeline
    finally:
        sys.path.pop(0)
    out = compile_pipeline(tmp_path / "p.yaml", image="semires:test", num_shards=3)
    doc = yaml.safe_load(out.read_text())
    executors = doc["deploymentSpec"]["executors"]
    commands = [list(map(str, e["container"].get("command", []))) for e in executors.values()]
    for stage in STAGES:
        n = sum(f"components.{stage}" in c for c in commands)
        assert n == (3 if stage == "candidates" else 1), f"{stage}: {n} steps"
    gpu = {k for k, e in executors.items() if "accelerator" in e["container"].get("resources", {})}
    assert any("candidates" in k for k in gpu) and any("burn-in" in k for k in gpu) and \
        any("train-student" in k for k in gpu)
    assert doc["root"]["inputDefinitions"]["parameters"].keys() >= {"label_ratio", "strategy", "pwa"}


def _required_options(stage: str) -> set[str]:
    import importlib

    import typer

    sys.path.insert(0, str(ROOT))
    cmd = typer.main.get_command(importlib.import_module(f"components.{stage}").APP)
    return {o for p in cmd.params if p.required for o in p.opts if o.startswith("--")}


def _dag_component_options(stage: str) -> set[str]:
    """The options of the DAG task's command (built by dags/semires_tasks.py from the table)."""
    sys.path.insert(0, str(ROOT / "dags"))
    try:
        from semires_tasks import stage_command
    finally:
        sys.path.pop(0)
    ctx = {"project": str(ROOT), "run_dir": "/tmp/run", "params": str(ROOT / "params.yaml"), "dag_run_id": "manual__t",
           "parent_run_id": "0" * 32}
    cmd = stage_command(stage, ctx, shard=0)
    assert "SEMIRES_PARENT_RUN_ID=" + "0" * 32 in cmd and f"-m components.{stage} " in cmd
    return {a for a in cmd.split() if a.startswith("--")}


@pytest.mark.parametrize("stage", STAGES)
def test_dag_and_kfp_pass_every_required_option(stage):
    """Airflow and Kubeflow call each component with all its required options (DVC runs them in CI)."""
    required = _required_options(stage)
    dag = _dag_component_options(stage)
    assert required <= dag, f"DAG task {stage} lacks {sorted(required - dag)}"
    given = {a for a in command(next(s for s in TABLE if s.name == stage), lambda a, w: a.path, shard=0)
             if isinstance(a, str) and a.startswith("--")}
    assert given <= _all_options(stage), f"the table passes {stage} options it lacks: {given - _all_options(stage)}"
    sys.path.insert(0, str(ROOT / "infra" / "kfp"))
    try:
        from pipeline import steps
    finally:
        sys.path.pop(0)
    kfp_stage = "candidates_0" if stage == "candidates" else stage
    given = {a for a in steps(2)[kfp_stage].args if isinstance(a, str) and a.startswith("--")}
    assert required <= given, f"Kubeflow step {stage} lacks {sorted(required - given)}"


def _all_options(stage: str) -> set[str]:
    import importlib

    import typer

    sys.path.insert(0, str(ROOT))
    cmd = typer.main.get_command(importlib.import_module(f"components.{stage}").APP)
    return {o for p in cmd.params for o in p.opts if o.startswith("--")}
