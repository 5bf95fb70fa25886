"""Compare the semires pipeline's MLflow runs: a Markdown table of label ratio, strategy and
mIoU / oIoU per split, rebuilt whenever a pipeline run publishes its report (and on demand)."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from semires_tasks import REPORT_ASSET_URI, run_dir_for, run_module


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
    def compare() -> str:
        ctx = get_current_context()
        p = ctx["params"]
        out = run_dir_for(p["work_root"], "semires_compare", ctx["dag_run"].run_id) / "compare.md"
        run_module("semires", ["pipeline", "compare", "--params", p["base_params"], "--max-runs", p["max_runs"],
                                            "--out", out])
        return str(out)

    compare()


semires_compare()
