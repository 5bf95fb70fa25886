"""The semires pipeline as an Airflow 3 DAG, built from the stage table (``semires/stages.py``):
one task per stage, candidate shards as mapped tasks, the table's edges as ``>>``.

``plan`` names the run folder (``<work_root>/semires_pipeline/<run_id>/``, the same layout as
dvc.yaml uses in the repository); ``open_run`` runs in the project's Python
(``@task.external_python``), writes the run's params (base + DAG params) and opens the parent
MLflow run, and returns the run context (folder, params file, parent run id) through XCom to every
stage task. Each stage task is a ``@task.bash`` running ``python -m components.<stage> ...`` in
the project's virtual environment; ordering between stages, where no value flows, is ``>>``.
``close_run`` ends the MLflow run, FINISHED when the report exists, and fails the DAG run otherwise.

Why components and not ``dvc repro --single-item <stage>``: DVC takes a repository-wide lock, so
mapped shard tasks could not run side by side in one workspace; DAG params (label ratio,
strategy) are per-run overrides, which a single params.yaml cannot hold for concurrent runs; and on
the KubernetesExecutor each task is its own pod with no DVC workspace. The commands are the ones
dvc.yaml runs (both come from the table), so both paths produce the same files; DVC stays the way
to reproduce and version outputs in the repository.

Retries are safe: every stage skips what it finished (complete shards, a finished checkpoint
folder) and resumes training from its last checkpoint.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from semires_tasks import (
    REPORT_ASSET_URI,
    gpu_executor_config,
    load_stages,
    project_dir,
    project_python,
    read_params,
    retry_delay_s,
    run_dir_for,
    stage_command,
)

REPORT_ASSET = Asset(REPORT_ASSET_URI)
TABLE = load_stages()
LAST = TABLE.STAGES[-1]  # the report: its metrics file marks a finished run

GPU = gpu_executor_config()
DEFAULT_ARGS = {"retries": 2, "retry_delay": datetime.timedelta(seconds=retry_delay_s()),
                "retry_exponential_backoff": True, "max_retry_delay": datetime.timedelta(minutes=10)}


def stage_task(st):
    """The ``@task.bash`` of stage ``st`` (a row of the table); called with the run context, and
    with ``shard`` for a sharded stage."""
    options = {"task_id": st.name, "cwd": str(project_dir()), "do_xcom_push": False, "skip_on_exit_code": None,
               "doc_md": f"`python -m {st.module}` (semires/stages.py, stage `{st.name}`)"}
    if st.gpu:
        options["executor_config"] = GPU
    if st.shards:
        options["max_active_tis_per_dagrun"] = 2
    if st is LAST:
        options["outlets"] = [REPORT_ASSET]

    @task.bash(**options)
    def run_stage(ctx: dict, shard: int | None = None) -> str:
        return stage_command(st.name, ctx, shard)

    return run_stage


@dag(
    dag_id="semires_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["semires"],
    params={
        "label_ratio": Param(0.1, type="number", exclusiveMinimum=0, maximum=1,
                             description="labeled fraction of train images (pipeline.label_ratio)"),
        "strategy": Param("soft_iom", enum=["none", "iom", "cpi", "soft_iom"],
                          description="refinement: none (mean teacher), iom, cpi, soft_iom (params.yaml's default)"),
        "pwa": Param(True, type="boolean", description="pixel-wise adjustment for unmatched pseudo-labels"),
        "base_params": Param("params.yaml", type="string", description="params file in the project, run's base"),
        "overrides": Param([], type="array", description="extra KEY.PATH=VALUE overrides, e.g. semi.steps=500"),
        "work_root": Param("", type="string", description="where run folders go (default $SEMIRES_WORK_ROOT or runs/)"),
    },
    doc_md=__doc__,
)
def semires_pipeline():
    @task
    def plan() -> dict:
        """The run's folder, params file and overrides (from the DAG params)."""
        ctx = get_current_context()
        p, dag_run_id = ctx["params"], ctx["dag_run"].run_id
        run_dir = run_dir_for(p["work_root"], "semires_pipeline", dag_run_id)
        sets = [f"pipeline.label_ratio={p['label_ratio']}", f"refine.strategy={p['strategy']}",
                f"refine.pwa={str(p['pwa']).lower()}", *p["overrides"]]
        return {"project": str(project_dir()), "run_dir": str(run_dir), "params": str(run_dir / "params.yaml"),
                "base_params": p["base_params"], "sets": sets, "dag_run_id": dag_run_id}

    @task.external_python(python=project_python(), expect_airflow=False)
    def open_run(plan: dict) -> dict:
        """In the project's Python: write the run's params (validated) and open the parent MLflow run;
        returns the run context every stage task gets."""
        import os
        import subprocess
        import sys

        os.chdir(plan["project"])
        sys.path.insert(0, plan["project"])
        os.environ["SEMIRES_DAG_RUN_ID"] = plan["dag_run_id"]  # tags the MLflow run
        subprocess.run([sys.executable, "-m", "components.configure", "--base", plan["base_params"],
                        "--out", plan["params"], *[a for s in plan["sets"] for a in ("--set", s)]], check=True)
        from semires.config import load_params, section
        from semires.pipeline import pipeline_summary
        from semires.runs import start_pipeline_run
        from semires.tracking import TrackingConfig

        params = load_params(plan["params"])
        run_id = start_pipeline_run(section(params, "mlflow", TrackingConfig), pipeline_summary(params),
                                    run_name=plan["dag_run_id"])
        print(f"pipeline run {run_id or '(tracking off)'}, folder {plan['run_dir']}")
        return {**{k: plan[k] for k in ("project", "run_dir", "params", "dag_run_id")}, "parent_run_id": run_id}

    @task
    def shard_ids(ctx: dict) -> list[int]:
        n = int((read_params(ctx["params"]).get("candidates") or {}).get("num_shards", 1))
        return list(range(n))

    @task.external_python(python=project_python(), expect_airflow=False, trigger_rule="all_done", retries=0)
    def close_run(ctx: dict, done_file: str, summary_file: str) -> str:
        """Close the parent MLflow run: FINISHED when the report's metrics exist, else FAILED (and fail
        this DAG run); returns the summary's path."""
        import os
        import sys
        from pathlib import Path

        ok = Path(ctx["run_dir"], done_file).is_file()
        if ctx.get("parent_run_id"):
            os.chdir(ctx["project"])
            sys.path.insert(0, ctx["project"])
            from semires.config import load_params, section
            from semires.runs import end_pipeline_run
            from semires.tracking import TrackingConfig

            end_pipeline_run(section(load_params(ctx["params"]), "mlflow", TrackingConfig), ctx["parent_run_id"],
                             "FINISHED" if ok else "FAILED")
        if not ok:
            raise RuntimeError(f"pipeline run {ctx['dag_run_id']} failed before its report; see the failed task")
        return str(Path(ctx["run_dir"], summary_file))

    ctx = open_run(plan())
    tasks = {}
    for st in TABLE.STAGES:
        run_stage = stage_task(st)
        tasks[st.name] = run_stage.partial(ctx=ctx).expand(shard=shard_ids(ctx)) if st.shards else run_stage(ctx)
        for name in TABLE.upstream(st):
            tasks[name] >> tasks[st.name]
    (summary,) = [TABLE.artifact(a).path for a in LAST.outputs.values()]
    list(tasks.values()) >> close_run(ctx, LAST.metrics_file, summary)


semires_pipeline()
