"""What each stage costs as the dataset grows to RefCOCO's size, run through the Airflow DAG.

    python benchmarks/scale_bench.py --work /tmp/scale --sizes 1500 5000 20000   # runs, then writes the report
    python benchmarks/scale_bench.py --work /tmp/scale --report                  # the report from finished runs
    python benchmarks/scale_bench.py --work /tmp/scale --render                  # the report from its stored raw
    python benchmarks/scale_bench.py --work /tmp/scale --sizes 20000 --retry-failed  # rerun a failed run's failed tasks

For each size, RefShapes ``default`` is generated at that many images (128 px; 20,000 images hold
about as many expressions as RefCOCO's 142,209) and the whole pipeline runs once as a run of the
``semires_pipeline`` DAG under Airflow's LocalExecutor (``airflow standalone``: scheduler, DAG
processor, API server and triggerer on this machine), with the project's MLflow server and S3
stand-in (``semires pipeline services``). Training is short on purpose (``SCALE_OVERRIDES``): the
per-step cost does not depend on the dataset's size, while data, candidates, pseudo-labels,
refinement and evaluation grow with it.

Per task it records wall time, CPU time and peak resident memory (the ``resource.*`` metrics every
stage logs to its MLflow run) and, from Airflow, when each task ran, so that the number of tasks
that ran at the same time is counted, not assumed. Writes ``benchmarks/results/scale_bench.json``
(per size and stage) and ``scale_bench.png`` (cost against size); ``make_tables.py`` renders them.
A size whose DAG run finished is not rerun; with ``--retry-failed`` a failed run's failed tasks
(and those they held back) are cleared and run again, the finished ones kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Self

from semires import services
from semires.hardware import cpu_summary

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
DAG = "semires_pipeline"
# Airflow's own clearing (what the UI's "clear failed" does), on one DAG run found by its run id (a
# triggered run has no logical date, so the CLI's date-range `tasks clear` cannot select it)
CLEAR_FAILED = """
import sys
from airflow.models.taskinstance import TaskInstance, clear_task_instances
from airflow.utils.session import create_session
with create_session() as s:
    tis = s.query(TaskInstance).filter(TaskInstance.dag_id == sys.argv[1], TaskInstance.run_id == sys.argv[2],
                                       TaskInstance.state.in_(("failed", "upstream_failed"))).all()
    clear_task_instances(tis, s)
    print(len(tis))
"""

# Short training (the per-step cost is the same at every size); everything that reads the data runs on all of it.
SCALE_OVERRIDES = ["split.ratios=[0.01]", "pretrain.num_images=200", "pretrain.steps=50", "pretrain.eval_every=50",
                   "pretrain.val_images=20", "burn_in.epochs=1", "burn_in.steps_per_epoch=50", "semi.steps=50",
                   "semi.eval_every=50", "candidates.num_shards=2", "mlflow.experiment=semires-scale",
                   # a 50-step teacher's masks are far from its candidates' areas (often empty, so the area ratio
                   # is infinite): the label gate would stop the run on what is not measured here (the gates
                   # themselves are tested in tests/checks)
                   "checks.labels.area_ratio_mostly=1e-6", "checks.labels.min_match_rate=0.0"]


def json_out(text: str) -> list:
    """The JSON list an ``airflow ... -o json`` command printed (its log lines go to stdout too)."""
    for line in reversed(text.splitlines()):
        if line.startswith("["):
            return json.loads(line)
    return []


def sh(args: list[str], env: dict, timeout: float = 600, check: bool = True) -> str:
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} failed ({res.returncode}): {(res.stdout + res.stderr)[-3000:]}")
    return res.stdout


class Airflow:
    """``airflow standalone`` in its own home under the work folder (LocalExecutor, SQLite)."""

    def __init__(self, work: Path, services_env: dict):
        self.home = work / "airflow"
        port = services.free_port()  # the API server's; tasks reach it through the execution API URL
        self.env = {**os.environ, **services_env, "AIRFLOW_HOME": str(self.home),
                    "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "4",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                    "SEMIRES_PROJECT_DIR": str(ROOT), "SEMIRES_PYTHON": sys.executable,
                    "SEMIRES_WORK_ROOT": str(work / "runs"), "SEMIRES_THREADS": "1", "SEMIRES_RETRY_DELAY_S": "5",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        self.proc: subprocess.Popen | None = None

    def airflow(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        return sh([str(Path(sys.executable).parent / "airflow"), *args], self.env, timeout, check)

    def __enter__(self) -> Self:
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate", timeout=900)
        log = open(self.home / "standalone.log", "a")  # held open for the child's life
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(120):  # the DAG processor has parsed the DAG once it is listed
            if DAG in self.airflow("dags", "list", "-o", "plain", check=False):
                break
            time.sleep(5)
        else:
            raise SystemExit(f"Airflow never listed {DAG}; see {self.home / 'standalone.log'}")
        self.airflow("dags", "unpause", DAG)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)

    def run(self, run_id: str, conf: dict, timeout_s: float, retry_failed: bool = False) -> str:
        """Trigger one DAG run and wait for it; returns its final state."""
        states = {r["run_id"]: r["state"] for r in json_out(self.airflow("dags", "list-runs", DAG, "-o", "json"))}
        if states.get(run_id) == "success":
            return "success"
        if states.get(run_id) == "failed":
            if not retry_failed:
                return "failed"
            n = sh([sys.executable, "-c", CLEAR_FAILED, DAG, run_id], self.env).strip().splitlines()[-1]
            print(f"{run_id}: cleared {n} failed task(s); the run goes on", flush=True)
        if run_id not in states:
            self.airflow("dags", "trigger", DAG, "--run-id", run_id, "--conf", json.dumps(conf))
        t0 = time.time()
        while time.time() - t0 < timeout_s:
            time.sleep(30)
            state = {r["run_id"]: r["state"]
                     for r in json_out(self.airflow("dags", "list-runs", DAG, "-o", "json"))}.get(run_id)
            print(f"[{time.time() - t0:6.0f} s] {run_id}: {state}", flush=True)
            if state in ("success", "failed"):
                return state
        return "timeout"

    def tasks(self, run_id: str) -> list[dict]:
        """Each task instance of the run: task_id, map_index, state, start and end (ISO)."""
        return json_out(self.airflow("tasks", "states-for-dag-run", DAG, run_id, "-o", "json"))


def stage_usage(tracking_uri: str, run_id: str) -> list[dict]:
    """The stage runs under the pipeline run of DAG run ``run_id``: stage, wall, CPU, peak memory, shard."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("semires-scale")
    if exp is None:
        return []
    rows = []
    # every stage run carries the DAG run's id (semires.runs.dag_run_id), as does the pipeline run itself
    for r in client.search_runs([exp.experiment_id], f"tags.`semires.dag_run_id` = '{run_id}' and "
                                                     "tags.`semires.kind` = 'stage'", max_results=500):
        m, stage = r.data.metrics, r.data.tags.get("semires.stage", r.info.run_name)
        if "resource.wall_s" not in m or r.info.status != "FINISHED":  # a failed try's cost is not the stage's
            continue
        rows.append({"stage": stage, "wall_s": m["resource.wall_s"], "cpu_s": m["resource.cpu_s"],
                     "peak_rss_mib": m["resource.peak_rss_mib"], "run_name": r.info.run_name,
                     "shard": r.data.tags.get("semires.shard")})
    return rows


def max_concurrency(tasks: list[dict]) -> int:
    """The most task instances that were running at one moment (from their start and end times)."""
    events = []
    for t in tasks:
        if t.get("start_date") and t.get("end_date"):
            events += [(datetime.fromisoformat(t["start_date"]), 1), (datetime.fromisoformat(t["end_date"]), -1)]
    best = now = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        now += d
        best = max(best, now)
    return best


def run_size(af: Airflow, work: Path, n: int, timeout_s: float, retry_failed: bool = False) -> dict:
    data = work / f"data_{n}"
    run_id = f"scale_{n}"
    conf = {"label_ratio": 0.01, "strategy": "soft_iom", "pwa": True, "work_root": str(work / "runs"),
            "overrides": [*SCALE_OVERRIDES, f"data.synth.num_images={n}", f"data.refer_dir={data}",
                          f"data.image_dir={data}/images"]}
    t0 = time.time()
    state = af.run(run_id, conf, timeout_s, retry_failed)
    return {"images": n, "run_id": run_id, "state": state, "waited_s": round(time.time() - t0, 1)}


def collect(af: Airflow, tracking_uri: str, runs: list[dict]) -> list[dict]:
    out = []
    for r in runs:
        tasks = af.tasks(r["run_id"])
        out.append({**r, "tasks": tasks, "max_concurrent_tasks": max_concurrency(tasks),
                    "stages": stage_usage(tracking_uri, r["run_id"])})
    return out


def counts(work: Path, n: int) -> dict:
    """Images, refs and expressions of the data of size ``n`` (the data stage's metrics of its DAG run)."""
    for f in (work / "runs" / DAG).glob(f"scale_{n}*/metrics/data.json"):
        m = json.loads(f.read_text())
        return {k: int(m[k]) for k in ("images", "refs", "expressions") if k in m}
    return {}


def report(work: Path, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, by_stage = [], {}
    for r in sorted(results, key=lambda r: r["images"]):
        agg: dict[str, dict] = {}
        for s in r["stages"]:  # shards of one stage add up (CPU) and overlap (wall: the longest)
            a = agg.setdefault(s["stage"], {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mib": 0.0, "tasks": 0})
            a["wall_s"] = max(a["wall_s"], s["wall_s"])
            a["cpu_s"] += s["cpu_s"]
            a["peak_rss_mib"] = max(a["peak_rss_mib"], s["peak_rss_mib"])
            a["tasks"] += 1
        for stage, a in agg.items():
            rows.append([r["images"], stage, a["tasks"], round(a["wall_s"], 1), round(a["cpu_s"], 1),
                         round(a["peak_rss_mib"])])
            by_stage.setdefault(stage, []).append((r["images"], a["wall_s"], a["cpu_s"], a["peak_rss_mib"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (stage, pts) in enumerate(sorted(by_stage.items())):
        xs, color = [p[0] for p in pts], plt.cm.tab20(i % 20)  # more stages than the default 10 colours
        axes[0].plot(xs, [p[2] for p in pts], "o-", label=stage, color=color)
        axes[1].plot(xs, [p[3] for p in pts], "o-", label=stage, color=color)
    axes[0].set(xscale="log", yscale="log", xlabel="images", ylabel="CPU seconds", title="CPU time per stage")
    axes[1].set(xscale="log", xlabel="images", ylabel="MiB", title="peak resident memory per stage")
    sizes = sorted({r["images"] for r in results})
    for ax in axes:  # the measured sizes as the ticks (log axes otherwise label 3x10^3, 4x10^3 ... over each other)
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "scale_bench.png", dpi=110)
    doc = {"title": "Stage cost against dataset size: RefShapes 'default' at 128 px through the Airflow DAG "
                    "(LocalExecutor), short training",
           "columns": ["images", "stage", "tasks", "wall s", "CPU s", "peak MiB"], "rows": rows,
           "runs": [{k: r[k] for k in ("images", "run_id", "state", "max_concurrent_tasks")} | counts(work, r["images"])
                    for r in results],
           "raw": results, "overrides": SCALE_OVERRIDES,
           "machine": cpu_summary(),
           "date": time.strftime("%Y-%m-%d"),
           "notes": ("One DAG run per size, one after another; wall, CPU (user + system, the process and its "
                     "finished children) and peak resident memory per task from the resource.* metrics of its "
                     "finished MLflow stage run (a failed try, retried with --retry-failed, is not counted); a "
                     "sharded stage's CPU is the sum over its shards, its wall the longest shard. Training is "
                     "short (SCALE_OVERRIDES): its per-step cost does not depend on the size. What differed "
                     "between the runs (code, retries, other jobs): docs/cost_model.md.")}
    (OUT / "scale_bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT / 'scale_bench.json'} and {OUT / 'scale_bench.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for data, Airflow's home and the run folders")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1500, 5000, 20000])
    ap.add_argument("--timeout-s", type=float, default=3 * 3600, help="per DAG run")
    ap.add_argument("--report", action="store_true", help="only collect finished runs and write the report")
    ap.add_argument("--retry-failed", action="store_true", help="clear a failed run's failed tasks and wait again")
    ap.add_argument("--render", action="store_true", help="rewrite the report from the raw results it holds (no runs)")
    args = ap.parse_args()
    args.work = args.work.resolve()
    if args.render:
        report(args.work, json.loads((OUT / "scale_bench.json").read_text())["raw"])
        return
    svc = services.up(args.work / "services")
    env = {**svc.env(), **services.credentials_env(dict(os.environ))}
    os.environ.update(env)
    with Airflow(args.work, env) as af:
        runs = []
        for n in args.sizes:
            if args.report:
                r = {"images": n, "run_id": f"scale_{n}", "state": "?"}
            else:
                r = run_size(af, args.work, n, args.timeout_s, args.retry_failed)
            print(json.dumps(r), flush=True)
            runs.append(r)
        report(args.work, collect(af, env["MLFLOW_TRACKING_URI"], runs))


if __name__ == "__main__":
    main()
