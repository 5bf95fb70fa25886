"""The pipeline end to end with its real parts, on RefShapes 'tiny' with tiny training budgets:
DVC (repro, no-op repro, a param change, push / pull through the S3 server, S3 down during a
push), MLflow (runs and registry through the REST API, artifacts in the bucket), Airflow
(``airflow dags test`` of the pipeline DAG with a task killed mid-way and retried) and a search
for the S3 secret in everything the pipeline wrote.

The tests run in file order and share one project; each builds on the state the previous left.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

STAGES = ["data", "split", "candidates@shard-00000-of-00002", "candidates@shard-00001-of-00002", "candidates_merge",
          "pretrain", "burn_in", "supervised", "pseudo_label", "refine", "train_student", "evaluate", "report"]
OUTS = ["data/refshapes", "data/index.json", "data/splits", "data/candidates", "models/pretrain/backbone.safetensors",
        "models/burn_in", "models/supervised", "data/pseudo", "data/refined", "models/student", "eval/student",
        "eval/student/teacher", "eval/student/supervised"]


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def tree_digest(root: Path, rels: list[str]) -> dict[str, str]:
    out = {}
    for rel in rels:
        p = root / rel
        # .gitignore files inside output folders are DVC's notes to git, not outputs
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file() and q.name != ".gitignore")
        for f in files:
            out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def rest(services, method: str, path: str, body: dict | None = None) -> dict:
    import urllib.request

    url = f"{services['svc'].mlflow_url}/api/2.0/mlflow/{path}"
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def first(project):
    """One full `dvc repro` under a parent MLflow run."""
    out = project.py("-m", "semires", "pipeline", "start-run", "--params", "params.yaml", "--name", "dvc-e2e").stdout
    run_id = out.strip().splitlines()[-1]
    res = project("dvc", "repro", env={"SEMIRES_PARENT_RUN_ID": run_id}, timeout=2400)  # a busy 2-core machine
    project.py("-m", "semires", "pipeline", "end-run", run_id, "--status", "auto", "--params", "params.yaml")
    return {"run_id": run_id, "stdout": res.stdout + res.stderr}


def test_repro_runs_every_stage_and_gates_pass(project, first):
    assert sorted(ran(first["stdout"])) == sorted(STAGES)
    root = project.cwd
    for out in OUTS:
        assert (root / out).exists(), out
    for report in ["data", "split", "candidates-0", "candidates-1", "pseudo_label", "refine"]:
        assert "passed" in (root / f"reports/checks/{report}.txt").read_text().splitlines()[0], report
    ev = json.loads((root / "metrics/evaluate.json").read_text())
    assert {"val.mIoU", "val.oIoU", "testA.mIoU", "testB.oIoU"} <= set(ev)
    summary = (root / "reports/summary.md").read_text()
    assert "| val |" in summary and "iom+pwa" in summary
    assert "Student against supervised only" in summary and {"teacher.val.mIoU", "supervised.val.mIoU"} <= set(ev)
    matched = json.loads((root / "models/supervised/metrics.json").read_text())
    student = json.loads((root / "models/student/metrics.json").read_text())
    assert matched["steps"] >= json.loads((root / "models/burn_in/metrics.json").read_text())["steps"] + student["steps"]
    burn = json.loads((root / "models/burn_in/config.json").read_text())
    assert burn["model"]["backbone_weights"].endswith("models/pretrain/backbone.safetensors")  # burn-in started there


def test_noop_repro_runs_nothing(project, first):
    res = project("dvc", "repro")
    assert ran(res.stdout) == []
    assert "up to date" in res.stdout


def test_mlflow_runs_and_registry_through_rest(project, first, services):
    import boto3

    exp = rest(services, "GET", "experiments/get-by-name?experiment_name=semires-test")["experiment"]
    parent = rest(services, "GET", f"runs/get?run_id={first['run_id']}")["run"]
    assert parent["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
    assert tags["semires.kind"] == "pipeline"
    metrics = {m["key"] for m in parent["data"].get("metrics", [])}
    assert {"val.mIoU", "val.oIoU"} <= metrics
    children = rest(services, "POST", "runs/search", {
        "experiment_ids": [exp["experiment_id"]], "max_results": 100,
        "filter": f"tags.`mlflow.parentRunId` = '{first['run_id']}'"})["runs"]
    by_stage = {}
    for r in children:
        t = {x["key"]: x["value"] for x in r["data"]["tags"]}
        by_stage.setdefault(t.get("semires.stage"), []).append(t)
    assert set(by_stage) >= {s.split("@")[0] for s in STAGES}
    assert len(by_stage["candidates"]) == 2
    for stage, runs in by_stage.items():
        for t in runs:
            assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", t["semires.git_commit"]), (stage, t)
            assert re.fullmatch(r"[0-9a-f]{12}", t["semires.params_hash"]), (stage, t)
    # artifacts are in the bucket, behind the server's artifact proxy
    s3 = boto3.client("s3", endpoint_url=services["svc"].s3_url, region_name="us-east-1",
                      aws_access_key_id=services["env"]["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=services["env"]["AWS_SECRET_ACCESS_KEY"])
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="semires", Prefix="mlflow/")
            for o in page.get("Contents", [])]
    assert any(k.endswith("evaluation/results.json") for k in keys)
    assert any(k.endswith("checks/refine.txt") for k in keys)
    # the student is registered with its evaluation metrics
    model = rest(services, "GET", "registered-models/get?name=semires-student-test")["registered_model"]
    version = model["latest_versions"][-1]
    vtags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert "val.mIoU" in vtags and "val.oIoU" in vtags


def test_compare_table_lists_the_run(project, first):
    out = project.py("-m", "semires", "pipeline", "compare", "--params", "params.yaml").stdout
    row = next(line for line in out.splitlines() if first["run_id"] in line)
    assert "0.5" in row and "iom+pwa" in row
    assert "val.mIoU" in out.splitlines()[0]


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no chromium (`make test` installs it as root: apt-get install chromium)")
def test_mlflow_ui_in_a_browser_shows_the_run_and_its_scores(project, first, services):
    """The link the demo prints, opened in headless Chromium: the experiment's training runs, the
    run and its scores as columns. The screenshot stays in tests/artifacts/ for people to look at."""
    from pipeline_helpers import ROOT

    link = project.py("-m", "semires.mlflow_ui", "--params", "params.yaml").stdout.strip().splitlines()[-1]
    exp = rest(services, "GET", "experiments/get-by-name?experiment_name=semires-test")["experiment"]
    assert link == f"{services['svc'].mlflow_url}/#/experiments/{exp['experiment_id']}/runs" \
        "?workflowType=machine_learning&viewStateShareKey=semires-scores"
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the training view, not GenAI's
    browser = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--window-size=1600,900", "--virtual-time-budget=30000"]
    dom = project(*browser, "--dump-dom", link, timeout=300).stdout
    parent = rest(services, "GET", f"runs/get?run_id={first['run_id']}")["run"]
    scores = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert "dvc-e2e" in dom  # the run's name
    for column in ("val.mIoU", "val.oIoU", "testA.mIoU", "testB.oIoU"):
        assert column in dom, f"no column {column} in the runs table"
    assert repr(scores["val.mIoU"]).removesuffix(".0")[:5] in dom  # its value (the cell's full-precision title)
    shot = ROOT / "tests/artifacts/mlflow_training_runs.png"
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    project(*browser, f"--screenshot={shot}", link, timeout=300)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_refine_param_change_reruns_refine_and_after_only(project, first):
    import yaml

    params = project.cwd / "params.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["refine"]["iom_iou_thresh"] = 0.4
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    stages = ran(project("dvc", "repro").stdout)
    assert {"refine", "train_student"} <= set(stages) <= {"refine", "train_student", "evaluate", "report"}


def test_push_with_s3_down_fails_clearly_then_succeeds(project, services):
    from semires import services as svc_mod

    before = tree_digest(project.cwd, OUTS)
    cache = sorted(p.relative_to(project.cwd) for p in (project.cwd / ".dvc/cache").rglob("*") if p.is_file())
    svc_mod.stop("s3", services["state"])
    try:
        res = project("dvc", "push", check=False, timeout=600)
        assert res.returncode != 0
        err = (res.stdout + res.stderr).lower()
        assert "127.0.0.1" in err or "connect" in err or "endpoint" in err, err[-2000:]
        assert tree_digest(project.cwd, OUTS) == before
        assert sorted(p.relative_to(project.cwd) for p in (project.cwd / ".dvc/cache").rglob("*") if p.is_file()) \
            == cache
    finally:
        back = svc_mod.up(services["state"], environ=services["environ"])
    assert back == services["svc"]  # same ports: the remote config and MLflow clients still point at them
    res = project("dvc", "push")
    assert "pushed" in (res.stdout + res.stderr).lower()


def cached_outs(root: Path) -> list[str]:
    """Every cached output dvc.lock records (what `dvc pull` restores)."""
    import yaml

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return sorted({o["path"] for st in lock["stages"].values() for o in st.get("outs", [])
                   if (root / o["path"]).exists() and not o["path"].startswith(("reports/", "metrics/", "plots/"))})


def test_cleared_cache_pull_restores_identical_outputs(project):
    import shutil

    outs = cached_outs(project.cwd)
    assert {"models/student", "data/candidates/manifest.json", "data/pseudo"} <= set(outs)
    before = tree_digest(project.cwd, outs)
    for out in outs:  # as in a fresh clone: the outputs and the cache are gone, git's files stay
        p = project.cwd / out
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(project.cwd / ".dvc/cache")
    project("dvc", "pull")
    assert tree_digest(project.cwd, outs) == before
    assert "up to date" in project("dvc", "status").stdout


def test_airflow_dag_with_a_killed_task_matches_dvc(project, services, tmp_path):
    home, work = tmp_path / "airflow", tmp_path / "runs"
    marker = tmp_path / "killed.txt"
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(project.cwd / "dags"), "SEMIRES_PROJECT_DIR": str(project.cwd),
           "SEMIRES_PYTHON": sys.executable, "SEMIRES_WORK_ROOT": str(work), "SEMIRES_RETRY_DELAY_S": "1",
           "SEMIRES_KILL_AT": f"pseudo_label={work}/semires_pipeline/*/data/pseudo/shard-00001.npz",
           "SEMIRES_KILL_MARKER": str(marker)}
    project("airflow", "db", "migrate", env=env, timeout=600)
    conf = json.dumps({"label_ratio": 0.5, "strategy": "iom", "pwa": True})
    res = project("airflow", "dags", "test", "semires_pipeline", "-c", conf, env=env, timeout=1800, check=False)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    assert marker.is_file(), "the kill switch never fired"
    (run_dir,) = list((work / "semires_pipeline").iterdir())
    # the retried task kept the shards written before the kill
    manifest = json.loads((run_dir / "data/pseudo/manifest.json").read_text())
    assert manifest["shards_reused"] >= 1
    assert "up_for_retry" in res.stdout + res.stderr  # Airflow retried the killed task
    # same params, same code: the interrupted DAG run ends with the metrics of the DVC run
    dag_metrics = json.loads((run_dir / "metrics/evaluate.json").read_text())
    dvc_metrics = json.loads((project.cwd / "metrics/evaluate.json").read_text())
    assert dag_metrics == dvc_metrics
    runs = rest(services, "POST", "runs/search", {
        "experiment_ids": [rest(services, "GET", "experiments/get-by-name?experiment_name=semires-test")
                           ["experiment"]["experiment_id"]],
        "filter": "tags.`semires.kind` = 'pipeline' and tags.`semires.dag_run_id` LIKE 'manual%'"})["runs"]
    assert runs and runs[0]["info"]["status"] == "FINISHED"


def test_dvc_exp_run_lists_the_experiment_with_its_scores_first(project):
    """`dvc exp run -S` on the tiny preset reruns what the param reaches; `dvc exp show` lists the
    experiment with the scores as its first metric columns, the stages' counts left out."""
    res = project("dvc", "exp", "run", "--name", "cpi-exp", "-S", "refine.strategy=cpi", timeout=1800)
    stages = ran(res.stdout + res.stderr)
    assert {"refine", "train_student", "report"} <= set(stages) and "data" not in stages and "burn_in" not in stages
    rows = json.loads(project("dvc", "exp", "show", "--json").stdout)
    exps = [r for base in rows for e in (base.get("experiments") or []) for r in e["revs"]]
    (exp,) = [r for r in exps if r["name"] == "cpi-exp"]
    assert exp["data"]["params"]["params.yaml"]["data"]["refine"]["strategy"] == "cpi"
    metrics = exp["data"]["metrics"]
    assert list(metrics) == ["metrics/scores.json"]  # counts and gate statistics are plain outputs
    scores = metrics["metrics/scores.json"]["data"]
    assert list(scores)[:4] == ["student.val.mIoU", "student.val.oIoU", "student.testA.mIoU", "student.testA.oIoU"]
    assert {"student.testB.oIoU", "teacher.val.mIoU", "gain.val.mIoU", "pseudo.lift.mIoU", "pseudo.match_rate",
            "time.teacher_train_s", "time.student_train_s"} <= set(scores)
    table = project("dvc", "exp", "show", "--csv").stdout.splitlines()
    header = table[0].split(",")
    first = header.index("student.val.mIoU")
    assert set(header[:first]) <= {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}, header
    row = next(line.split(",") for line in table if line.startswith("cpi-exp,"))
    assert float(row[first]) == pytest.approx(scores["student.val.mIoU"])
    shown = json.loads(project("dvc", "metrics", "show", "--json").stdout)
    assert list(shown[""]["data"]) == ["metrics/scores.json"]


def test_no_secret_in_logs_params_or_dvc_files(project, services, secret, tmp_path_factory):
    needle = secret.encode()
    roots = [project.cwd, services["state"], project.log.parent, Path(tmp_path_factory.getbasetemp())]
    leaks = []
    for root in roots:
        for f in root.rglob("*"):
            if f.is_file() and f.stat().st_size < 200_000_000 and needle in f.read_bytes():
                leaks.append(str(f))
    assert not leaks, f"the S3 secret appears in {leaks[:10]}"
    exps = rest(services, "POST", "experiments/search", {"max_results": 100})["experiments"]
    runs = rest(services, "POST", "runs/search", {"experiment_ids": [e["experiment_id"] for e in exps],
                                                  "max_results": 1000})["runs"]
    assert runs
    for r in runs:
        for item in r["data"].get("params", []) + r["data"].get("tags", []):
            assert secret not in item["value"], (r["info"]["run_id"], item["key"])
