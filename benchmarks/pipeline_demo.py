"""Time the main job (scripts/demo.sh) from a clean state, stage by stage, and record its results.

Runs the demo in a throw-away copy of the working tree (its own services, DVC cache and outputs;
the repository's .venv is linked, not copied), then reads every stage's MLflow run for its duration
and the report for the scores. Writes benchmarks/results/pipeline_demo.json.

    .venv/bin/python benchmarks/pipeline_demo.py            # about 15 minutes on 2 cores

Stage durations are MLflow run durations (the stage's work, without its ~5-10 s of Python and
library start-up); "total" is the whole demo.sh wall time, services start-up and dvc push included.
demo.sh runs two stages at a time where the graph allows (SEMIRES_JOBS), so stages overlap and
their durations add up to more than the total.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from semires.hardware import cpu_summary
from semires.io import write_json

SKIP = {".venv", "data", "models", "eval", "runs", ".services", "mlruns", "mlartifacts", "out", ".git"}


def copy_tree(dst: Path) -> None:
    for item in ROOT.iterdir():
        if item.name in SKIP or item.name in {"reports", "metrics", "plots", "dvc.lock", "mlflow.db"}:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, ignore=shutil.ignore_patterns("__pycache__", "cache", "tmp",
                                                                              "config.local"))
        else:
            shutil.copy2(item, dst / item.name)
    shutil.copytree(ROOT / ".git", dst / ".git")  # DVC wants the git repository; git state is not changed
    (dst / ".venv").symlink_to(ROOT / ".venv")


def setting_note() -> str:
    """What the demo ran, read from params.yaml (so the note cannot drift from the params)."""
    import yaml

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    data, refine, model = p["data"], p["refine"], p["model"]
    synth = data.get("synth") or {}
    what = (f"RefShapes {synth.get('preset', 'default')}" if data.get("dataset") == "refshapes"
            else str(data.get("dataset")))
    strategy = refine["strategy"] + ("+pwa" if refine.get("pwa") else "")
    return (f"{what}, label ratio {p['pipeline']['label_ratio']}, {p['semi']['mode']} {strategy}, "
            f"{p['candidates']['generator']} candidates, {model['name']} at {p['burn_in']['image_size']} px, "
            f"burn-in {p['burn_in']['epochs']} x {p['burn_in']['steps_per_epoch']} steps, semi {p['semi']['steps']} steps")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="semires-demo-"))
    copy_tree(work)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    res = subprocess.run(["bash", "scripts/demo.sh"], cwd=work, capture_output=True, text=True, check=False)
    total = time.perf_counter() - t0
    load_after = os.getloadavg()
    (work / "demo.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        sys.exit(f"demo.sh failed ({res.returncode}); log: {work / 'demo.log'}")
    env = dict(os.environ)
    for line in (work / ".services/env.sh").read_text().splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        if not v.startswith('"$'):
            env[k] = v
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "AWS_ENDPOINT"))})
    import mlflow

    parent = mlflow.search_runs(experiment_names=["semires"], output_format="list", max_results=1,
                                filter_string="tags.`semires.kind` = 'pipeline'",
                                order_by=["attributes.start_time DESC"])[0]
    stages = mlflow.search_runs(experiment_names=["semires"], output_format="list",
                                filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                order_by=["attributes.start_time ASC"])
    rows, raw = [], []
    for r in stages:
        secs = (r.info.end_time - r.info.start_time) / 1000
        shard = r.data.tags.get("semires.shard")
        name = r.info.run_name + (f" {shard}" if shard else "")
        rows.append([name, round(secs, 1)])
        raw.append({"stage": name, "seconds": secs, "metrics": r.data.metrics})
    rows.append(["total (demo.sh, services and dvc push included)", round(total, 1)])
    m = {k: parent.data.metrics.get(k, float("nan")) for k in ("val.mIoU", "val.oIoU", "testA.mIoU", "testB.mIoU",
                                                                 "teacher.val.mIoU", "supervised.val.mIoU")}
    subprocess.run([str(work / ".venv/bin/semires"), "pipeline", "services", "down", "--state-dir",
                    str(work / ".services")], check=False)
    result = {
        "title": "The main job (make demo): stage times on the embedded default",
        "columns": ["stage", "seconds"], "rows": rows,
        "notes": (f"{setting_note()}, params.yaml as committed, "
                  f"SEMIRES_THREADS={os.environ.get('SEMIRES_THREADS', '1')}, "
                  f"SEMIRES_JOBS={os.environ.get('SEMIRES_JOBS', '2')} (stages at a time: they overlap). "
                  f"Student val mIoU {m['val.mIoU']:.2f} / oIoU {m['val.oIoU']:.2f}, "
                  f"testA mIoU {m['testA.mIoU']:.2f}, testB mIoU {m['testB.mIoU']:.2f}; its burn-in teacher "
                  f"{m['teacher.val.mIoU']:.2f} and the step-matched supervised run {m['supervised.val.mIoU']:.2f} "
                  "val mIoU. "
                  f"Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (shared machine)."),
        "machine": cpu_summary(), "date": str(date.today()),
        "raw": raw, "total_s": total, "parent_metrics": m,
    }
    out = ROOT / "benchmarks/results/pipeline_demo.json"
    write_json(out, result)
    print(out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
