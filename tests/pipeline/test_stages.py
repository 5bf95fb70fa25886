"""The stage table (semires/stages.py) is the one description of the graph: dvc.yaml is generated
from it, the DAG and the Kubeflow pipeline are built from it, and adding a stage is one row."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import ROOT

from semires import stages


def test_dvc_yaml_is_generated_from_the_table(capsys):
    assert (ROOT / "dvc.yaml").read_text() == stages.dvc_yaml_text(ROOT / "params.yaml"), \
        "dvc.yaml differs from semires/stages.py: run `python -m semires.stages --write`"
    assert stages.main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(ROOT / "dvc.yaml")]) == 0


def test_check_mode_fails_on_a_hand_edited_dvc_yaml(tmp_path, capsys):
    edited = tmp_path / "dvc.yaml"
    edited.write_text((ROOT / "dvc.yaml").read_text().replace("--out data/pseudo", "--out data/pseudo2"))
    assert stages.main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(edited)]) == 1
    assert "python -m semires.stages --write" in capsys.readouterr().err


def test_the_table_needs_only_the_standard_library():
    """The DAG processor and the Kubeflow compiler load it by path: no semires, airflow, dvc or kfp."""
    tree = ast.parse((ROOT / "semires/stages.py").read_text())
    top = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    top |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert top <= set(sys.stdlib_module_names) | {"__future__", "yaml"}, top


def test_graph_edges_follow_reads_and_writes():
    stages.check_table()
    assert stages.upstream(stages.stage("refine")) == ["data", "candidates_merge", "pseudo_label"]
    assert stages.producer("candidates").name == "candidates_merge"  # complete once the shards are merged
    assert set(stages.upstream(stages.stage("report"))) == {s.name for s in stages.metric_stages()}
    with pytest.raises(KeyError, match="stages: data, split"):
        stages.stage("pretrian")


def test_a_read_before_its_write_is_an_error(monkeypatch):
    early = stages.Stage("early", params=(), inputs={"--model": "student"},
                         outputs={"--out": stages.Out("early_out", "models/early")})
    monkeypatch.setattr(stages, "STAGES", (stages.STAGES[0], early, *stages.STAGES[1:]))
    with pytest.raises(ValueError, match="reads 'student' before a stage writes it"):
        stages.check_table()
    ghost = stages.Stage("ghost", params=(), inputs={"--x": "nowhere"})
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES[:1], ghost))
    with pytest.raises(ValueError, match="reads 'nowhere', which no stage writes"):
        stages.check_table()


def _snippet(marker: str) -> str:
    text = (ROOT / "docs/stages.md").read_text()
    return re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.DOTALL).group(1)


def _project_with_pretrain(tmp_path: Path) -> Path:
    """A copy of the project's table and DAGs with the edits docs/stages.md describes (as they are,
    once the project has made them)."""
    root = tmp_path / "project"
    (root / "semires").mkdir(parents=True)
    shutil.copytree(ROOT / "dags", root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    src = (ROOT / "semires/stages.py").read_text()
    if 'Stage("pretrain"' not in src:
        entry = _snippet("pretrain-entry")
        reads = _snippet("pretrain-reads").strip().removesuffix("...").removeprefix("inputs={")
        at = src.index('    Stage("burn_in"')
        src = src[:at] + entry + src[at:]
        for name in ("burn_in", "train_student"):
            at = src.index("inputs={", src.index(f'    Stage("{name}"')) + len("inputs={")
            src = src[:at] + reads + src[at:]
    (root / "semires/stages.py").write_text(src)
    return root


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("stage_table_with_pretrain", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_worked_example_adds_a_stage_in_one_place(tmp_path):
    root = _project_with_pretrain(tmp_path)
    table = _load(root / "semires/stages.py")
    table.check_table()

    readers = [st.name for st in table.STAGES if "pretrain" in st.artifacts_read()]
    assert "burn_in" in readers

    # DVC: the new stage, and the edges to it
    dvc = table.dvc_yaml(2)["stages"]
    assert list(dvc).index("pretrain") < list(dvc).index("burn_in")
    pre = dvc["pretrain"]
    assert "python -m components.pretrain --out models/pretrain --metrics metrics/pretrain.json" in pre["cmd"]
    assert "pretrain" in pre["params"] and pre["deps"][:2] == ["components/pretrain.py", "components/_stage.py"]
    assert pre["outs"] == ["models/pretrain", {"metrics/pretrain.json": {"cache": False}}]
    for name in readers:
        assert "models/pretrain" in dvc[name]["deps"] and " models/pretrain" in dvc[name]["cmd"]
    assert "metrics/pretrain.json" in dvc["report"]["deps"]
    assert "pretrain" in [s.metrics_name or s.name for s in table.metric_stages()]  # what the report reads

    # Kubeflow: a step with a Model output, wired into burn_in and train_student, metrics to the report
    sys.path.insert(0, str(ROOT / "infra" / "kfp"))
    try:
        from pipeline import steps
    finally:
        sys.path.pop(0)
    kfp = steps(2, table)
    assert ("pretrain", "Model") in kfp["pretrain"].outputs and kfp["pretrain"].gpu
    assert all(("pretrain", "Model") in kfp[name].inputs for name in readers)
    assert ("m_pretrain", "Artifact") in kfp["report"].inputs

    # Airflow: the DAG, parsed by Airflow from the edited copy, has the task and its edges
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]);"
            "from airflow.dag_processing.dagbag import BundleDagBag;"
            "b = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1]); d = b.dags.get('semires_pipeline');"
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
            "'up': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks} if d else {}}))")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "SEMIRES_PROJECT_DIR": str(root)}
    out = subprocess.run([sys.executable, "-c", code, str(root / "dags")], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["errors"] == {}
    up = doc["up"]
    assert "pretrain" in up and set(up["pretrain"]) == {"open_run"}
    assert all("pretrain" in up[name] for name in readers) and "split" in up["burn_in"]
    assert "pretrain" in up["report"] and "pretrain" in up["close_run"]

    sys.path.insert(0, str(root / "dags"))
    try:
        from semires_tasks import stage_command
    finally:
        sys.path.pop(0)
    ctx = {"project": str(root), "run_dir": "/r", "params": str(ROOT / "params.yaml"), "dag_run_id": "m"}
    assert "--pretrained /r/models/pretrain" in stage_command("burn_in", ctx)
    assert yaml.safe_load(yaml.safe_dump(dvc))  # the generated document is plain YAML
