"""Helpers the semires DAGs share: where the project is, and running one component in its venv.

Tasks run the project's components as subprocesses of the project's own Python
(``SEMIRES_PYTHON``, default ``<project>/.venv/bin/python``), so torch and the models never load
into the Airflow worker and Airflow can live in another environment. Nothing heavy is imported
at module level: the DAG processor parses this file often.

Environment read here (all optional):
- ``SEMIRES_PROJECT_DIR``: the repository checkout (default: the parent of this dags/ folder);
- ``SEMIRES_PYTHON``: the interpreter that has semires installed;
- ``SEMIRES_WORK_ROOT``: where run folders go (default ``<project>/runs``);
- ``SEMIRES_GPU_POD_TEMPLATE``: under the KubernetesExecutor, the pod template file of the GPU
  tasks (candidates, burn_in, pseudo_label, train_student, evaluate; infra/k8s/pod-templates/gpu.yaml);
- ``SEMIRES_RETRY_DELAY_S``: first retry delay in seconds (default 30).
MLflow and S3 settings (``MLFLOW_TRACKING_URI``, ``AWS_*``) pass through to the components from
the worker's environment and are never printed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections import deque
from pathlib import Path

# The asset the pipeline's report task updates; the compare DAG is scheduled on it.
REPORT_ASSET_URI = "semires://pipeline/report"

# Where each stage reads and writes, relative to a run folder (dvc.yaml keeps the same layout
# relative to the repository root).
LAYOUT = {
    "params": "params.yaml",
    "index": "data/index.json",
    "splits": "data/splits",
    "candidates": "data/candidates",
    "burn_in": "models/burn_in",
    "pseudo": "data/pseudo",
    "refined": "data/refined",
    "student": "models/student",
    "evaluation": "eval/student",
    "summary": "reports/summary.md",
    "checks": "reports/checks",
    "metrics": "metrics",
}


def gpu_executor_config() -> dict:
    """``executor_config`` of GPU tasks: the GPU pod template when one is configured, else nothing.

    A template file path (not a V1Pod object) keeps the kubernetes client out of DAG parsing.
    """
    template = os.environ.get("SEMIRES_GPU_POD_TEMPLATE")
    return {"pod_template_file": template} if template else {}


def retry_delay_s() -> float:
    return float(os.environ.get("SEMIRES_RETRY_DELAY_S", "30"))


def project_dir() -> Path:
    return Path(os.environ.get("SEMIRES_PROJECT_DIR") or Path(__file__).resolve().parents[1])


def project_python() -> str:
    if os.environ.get("SEMIRES_PYTHON"):
        return os.environ["SEMIRES_PYTHON"]
    venv = project_dir() / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_dir_for(work_root: str, dag_id: str, run_id: str) -> Path:
    """The run folder of one DAG run: ``<work_root>/<dag_id>/<run_id with unsafe characters replaced>``."""
    root = Path(work_root or os.environ.get("SEMIRES_WORK_ROOT") or project_dir() / "runs")
    if not root.is_absolute():
        root = project_dir() / root
    return root / dag_id / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def run_module(module: str, args: list[str], ctx: dict | None = None, tail_lines: int = 40) -> str:
    """Run ``python -m module args`` in the project; stream its output to the task log.

    ``ctx`` (the run context from the DAG's first task) adds ``SEMIRES_PARENT_RUN_ID`` and
    ``SEMIRES_DAG_RUN_ID`` to the child's environment. Raises RuntimeError with the output's tail
    on a non-zero exit, so Airflow marks the try failed and retries it. Returns the output.
    """
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if ctx:
        if ctx.get("parent_run_id"):
            env["SEMIRES_PARENT_RUN_ID"] = ctx["parent_run_id"]
        env["SEMIRES_DAG_RUN_ID"] = ctx["dag_run_id"]
    cmd = [project_python(), "-m", module, *[str(a) for a in args]]
    print("+ " + shlex.join(cmd), flush=True)
    tail: deque[str] = deque(maxlen=tail_lines)
    out: list[str] = []
    proc = subprocess.Popen(cmd, cwd=project_dir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        tail.append(line)
        out.append(line)
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"{module} exited with code {code}; last lines:\n{''.join(tail)}")
    return "".join(out)


def component(stage: str, args: list[str], ctx: dict) -> None:
    """Run stage ``stage`` (``components.<stage>``) with the run's params file appended."""
    run_module(f"components.{stage}", [*args, "--params", ctx["params"]], ctx)


def read_params(path: str) -> dict:
    """The run's params file as a dict (for orchestration choices only, e.g. the shard count)."""
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}
