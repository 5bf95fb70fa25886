"""Compare the semires pipeline's MLflow runs: a Markdown table of label ratio, strategy and
mIoU / oIoU per split, rebuilt whenever a pipeline run publishes its report (and on demand)."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from semires_tasks import REPORT_ASSET_URI, project_dir, project_python, run_dir_for


@dag(
    dag_id="semires_compare",
    schedule=[Asset(REPORT_ASSET_URI)],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=30)},
    tags=["semires"],
    params={"max_runs": Param(50, type="integer", minimum=1, description="newest pipeline runs in the table"),
            "base_params": Param("params.yaml", type="string", description="params file (its mlflow section)"),
            "work_root": Param("", type="string", description="where the report goes (default runs/)")},
    doc_md=__doc__,
)
def semires_compare():
    @task
    def table_path() -> str:
        """Where this run's table goes."""
        ctx = get_current_context()
        return str(run_dir_for(ctx["params"]["work_root"], "semires_compare", ctx["dag_run"].run_id) / "compare.md")

    @task.bash(cwd=str(project_dir()), do_xcom_push=False, skip_on_exit_code=None)
    def compare(out: str) -> str:
        """`semires pipeline compare` in the project's Python, writing the table to ``out``."""
        import shlex

        p = get_current_context()["params"]
        return "exec " + shlex.join([project_python(), "-m", "semires", "pipeline", "compare", "--params",
                                     p["base_params"], "--max-runs", str(p["max_runs"]), "--out", out])

    compare(table_path())


semires_compare()
