"""Helpers the semires DAGs share: where the project is, its stage table, and the command of a stage.

Tasks run the project's components in the project's own Python (``SEMIRES_PYTHON``, default
``<project>/.venv/bin/python``) through Airflow's operators (``@task.bash`` for stage commands,
``@task.external_python`` where a value comes back), so torch and the models never load into the
Airflow worker and Airflow can live in another environment. The stage graph comes from
``semires/stages.py``, loaded by file path (it needs only the standard library): the DAG
processor never imports the ``semires`` package. Nothing heavy is imported at module level.

Environment read here (all optional):
- ``SEMIRES_PROJECT_DIR``: the repository checkout (default: the parent of this dags/ folder);
- ``SEMIRES_PYTHON``: the interpreter that has semires installed;
- ``SEMIRES_WORK_ROOT``: where run folders go (default ``<project>/runs``);
- ``SEMIRES_GPU_POD_TEMPLATE``: under the KubernetesExecutor, the pod template file of the GPU
  tasks (the stages semires/stages.py marks ``gpu``; infra/k8s/pod-templates/gpu.yaml);
- ``SEMIRES_RETRY_DELAY_S``: first retry delay in seconds (default 30).
MLflow and S3 settings (``MLFLOW_TRACKING_URI``, ``AWS_*``) pass through to the components from
the worker's environment and are never printed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

# The asset the pipeline's report task updates; the compare DAG is scheduled on it.
REPORT_ASSET_URI = "semires://pipeline/report"


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


def load_stages(project: str | Path | None = None) -> ModuleType:
    """The project's stage table (``semires/stages.py``), loaded by file path as module
    ``semires_stage_table``: standard library only, so no ``semires`` import in the DAG processor."""
    path = Path(project or project_dir()) / "semires" / "stages.py"
    spec = importlib.util.spec_from_file_location("semires_stage_table", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def read_params(path: str) -> dict:
    """The run's params file as a dict (for orchestration choices only, e.g. the shard count)."""
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def _param(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def stage_command(name: str, ctx: dict, shard: int | None = None) -> str:
    """The bash command of stage ``name`` in the run ``ctx`` (from the DAG's ``open_run`` task).

    Paths follow the table's layout inside the run folder; shared datasets (the REFER folder and
    its images) come from the run's params, relative to the project. The parent MLflow run and
    the dag_run id reach the component as ``SEMIRES_PARENT_RUN_ID`` / ``SEMIRES_DAG_RUN_ID``.
    """
    stages = load_stages(ctx["project"])
    st = stages.stage(name)
    run_dir, project = Path(ctx["run_dir"]), Path(ctx["project"])
    params = read_params(ctx["params"])

    def path(a, written: bool) -> str:
        if a.shared:
            return str(project / (_param(params, a.param) or a.path))
        return str(run_dir / a.path)

    cmd = stages.command(st, path, shard=shard, params=ctx["params"], metrics_dir=str(run_dir / "metrics"),
                         file=lambda kind, rel: str(run_dir / rel))
    cmd[0] = project_python()
    env = {"PYTHONUNBUFFERED": "1", "SEMIRES_DAG_RUN_ID": ctx["dag_run_id"]}
    if ctx.get("parent_run_id"):
        env["SEMIRES_PARENT_RUN_ID"] = ctx["parent_run_id"]
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # exec: the component replaces the shell, so a kill of it is the task's own exit status
    return f"export {exports}; exec {shlex.join(str(c) for c in cmd)}"
