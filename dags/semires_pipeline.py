"""The semires pipeline as an Airflow 3 DAG: one task per stage, candidate shards as mapped tasks.

Each task runs the stage's component (``python -m components.<stage> ...``) in the project's
virtual environment through :mod:`semires_tasks`, inside a run folder of its own
(``<work_root>/semires_pipeline/<run_id>/``, the same layout as dvc.yaml uses in the repository).

Why components and not ``dvc repro --single-item <stage>``: DVC takes a repository-wide lock, so
mapped shard tasks could not run side by side in one workspace; DAG params (label ratio,
strategy) are per-run overrides, which a single params.yaml cannot hold for concurrent runs; and on
the KubernetesExecutor each task is its own pod with no DVC workspace. The commands are the ones
dvc.yaml runs, so both paths produce the same files; DVC stays the way to reproduce and version
outputs in the repository.

Retries are safe: every stage skips what it finished (complete shards, a finished checkpoint
folder) and resumes training from its last checkpoint. XCom carries only paths and run ids.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from semires_tasks import (
    LAYOUT,
    REPORT_ASSET_URI,
    component,
    gpu_executor_config,
    read_params,
    retry_delay_s,
    run_dir_for,
    run_module,
)

REPORT_ASSET = Asset(REPORT_ASSET_URI)

GPU = gpu_executor_config()
DEFAULT_ARGS = {"retries": 2, "retry_delay": datetime.timedelta(seconds=retry_delay_s()),
                "retry_exponential_backoff": True, "max_retry_delay": datetime.timedelta(minutes=10)}


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
        "strategy": Param("iom", enum=["none", "iom", "cpi"], description="refinement: none (mean teacher), iom, cpi"),
        "pwa": Param(True, type="boolean", description="pixel-wise adjustment for unmatched pseudo-labels"),
        "base_params": Param("params.yaml", type="string", description="params file in the project, run's base"),
        "overrides": Param([], type="array", description="extra KEY.PATH=VALUE overrides, e.g. semi.steps=500"),
        "work_root": Param("", type="string", description="where run folders go (default $SEMIRES_WORK_ROOT or runs/)"),
    },
    doc_md=__doc__,
)
def semires_pipeline():
    @task
    def prepare() -> dict:
        """Write the run's params (base + DAG params) and open the parent MLflow run."""
        ctx = get_current_context()
        p, dag_run_id = ctx["params"], ctx["dag_run"].run_id
        run_dir = run_dir_for(p["work_root"], "semires_pipeline", dag_run_id)
        params = run_dir / LAYOUT["params"]
        sets = [f"pipeline.label_ratio={p['label_ratio']}", f"refine.strategy={p['strategy']}",
                f"refine.pwa={str(p['pwa']).lower()}", *p["overrides"]]
        run_ctx = {"run_dir": str(run_dir), "params": str(params), "dag_run_id": dag_run_id, "parent_run_id": None}
        run_module("components.configure", ["--base", p["base_params"], "--out", params,
                                            *[a for s in sets for a in ("--set", s)]], run_ctx)
        out = run_module("semires", ["pipeline", "start-run", "--params", params, "--name", dag_run_id], run_ctx)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        run_ctx["parent_run_id"] = lines[-1] if lines and len(lines[-1]) == 32 else None
        return run_ctx

    def rd(ctx: dict, key: str, *more: str) -> str:
        from pathlib import Path

        return str(Path(ctx["run_dir"], LAYOUT[key], *more))

    @task
    def data(ctx: dict) -> dict:
        from pathlib import Path

        from semires_tasks import project_dir

        cfg = read_params(ctx["params"]).get("data", {})
        refer = Path(project_dir(), cfg.get("refer_dir", "data/refshapes"))
        images = Path(project_dir(), cfg.get("image_dir", "data/refshapes/images"))
        component("data", ["--refer-dir", refer, "--image-dir", images, "--index", rd(ctx, "index"),
                           "--report", rd(ctx, "checks", "data.txt"), "--metrics", rd(ctx, "metrics", "data.json")],
                  ctx)
        return ctx

    @task
    def split(ctx: dict) -> dict:
        component("split", ["--index", rd(ctx, "index"), "--out", rd(ctx, "splits"),
                            "--report", rd(ctx, "checks", "split.txt"), "--metrics", rd(ctx, "metrics", "split.json")],
                  ctx)
        return ctx

    @task
    def shard_ids(ctx: dict) -> list[int]:
        n = int((read_params(ctx["params"]).get("candidates") or {}).get("num_shards", 1))
        return list(range(n))

    @task(max_active_tis_per_dagrun=2, executor_config=GPU)
    def candidates(ctx: dict, shard: int) -> str:
        component("candidates", ["--index", rd(ctx, "index"), "--shard", shard, "--out", rd(ctx, "candidates"),
                                 "--report", rd(ctx, "checks", f"candidates-{shard}.txt"),
                                 "--metrics", rd(ctx, "metrics", "candidates", f"shard-{shard}.json")], ctx)
        return rd(ctx, "candidates")

    @task
    def candidates_merge(ctx: dict, shard_dirs: list[str]) -> dict:
        component("candidates_merge", ["--out", rd(ctx, "candidates"),
                                       "--metrics", rd(ctx, "metrics", "candidates.json")], ctx)
        return ctx

    @task(executor_config=GPU)
    def burn_in(ctx: dict) -> dict:
        component("burn_in", ["--index", rd(ctx, "index"), "--splits", rd(ctx, "splits"), "--out", rd(ctx, "burn_in"),
                              "--metrics", rd(ctx, "metrics", "burn_in.json")], ctx)
        return ctx

    @task(executor_config=GPU)
    def pseudo_label(ctx: dict) -> dict:
        component("pseudo_label", ["--index", rd(ctx, "index"), "--splits", rd(ctx, "splits"),
                                   "--teacher", rd(ctx, "burn_in"), "--out", rd(ctx, "pseudo"),
                                   "--report", rd(ctx, "checks", "pseudo_label.txt"),
                                   "--metrics", rd(ctx, "metrics", "pseudo_label.json")], ctx)
        return ctx

    @task
    def refine(ctx: dict, store: dict) -> dict:
        component("refine", ["--index", rd(ctx, "index"), "--pseudo", rd(ctx, "pseudo"),
                             "--candidates", rd(ctx, "candidates"), "--out", rd(ctx, "refined"),
                             "--report", rd(ctx, "checks", "refine.txt"),
                             "--metrics", rd(ctx, "metrics", "refine.json")], ctx)
        return ctx

    @task(executor_config=GPU)
    def train_student(ctx: dict) -> dict:
        component("train_student", ["--index", rd(ctx, "index"), "--splits", rd(ctx, "splits"),
                                    "--teacher", rd(ctx, "burn_in"), "--candidates", rd(ctx, "candidates"),
                                    "--refined", rd(ctx, "refined"), "--out", rd(ctx, "student"),
                                    "--metrics", rd(ctx, "metrics", "train_student.json")], ctx)
        return ctx

    @task(executor_config=GPU)
    def evaluate(ctx: dict) -> dict:
        component("evaluate", ["--index", rd(ctx, "index"), "--model", rd(ctx, "student"),
                               "--out", rd(ctx, "evaluation"), "--metrics", rd(ctx, "metrics", "evaluate.json")], ctx)
        return ctx

    @task(outlets=[REPORT_ASSET])
    def report(ctx: dict) -> dict:
        component("report", ["--metrics-dir", rd(ctx, "metrics"), "--student", rd(ctx, "student"),
                             "--index", rd(ctx, "index"), "--out", rd(ctx, "summary"),
                             "--metrics", rd(ctx, "metrics", "report.json")], ctx)
        return ctx

    @task(trigger_rule="all_done", retries=0)
    def finish(ctx: dict) -> str:
        """Close the parent MLflow run: FINISHED when the report exists, else FAILED (and fail this run)."""
        from pathlib import Path

        ok = Path(rd(ctx, "metrics", "report.json")).is_file()
        if ctx.get("parent_run_id"):
            run_module("semires", ["pipeline", "end-run", ctx["parent_run_id"], "--status",
                                                "FINISHED" if ok else "FAILED", "--params", ctx["params"]], ctx)
        if not ok:
            raise RuntimeError(f"pipeline run {ctx['dag_run_id']} failed before its report; see the failed task")
        return rd(ctx, "summary")

    ctx = prepare()
    ready = split(data(ctx))
    store = candidates_merge(ready, candidates.partial(ctx=ready).expand(shard=shard_ids(ready)))
    teacher = burn_in(ready)
    refined = refine(pseudo_label(teacher), store)
    done = report(evaluate(train_student(refined)))
    finish(ctx) << done


semires_pipeline()
