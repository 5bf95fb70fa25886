"""Pipeline executions in MLflow: the parent run, stage tags, and the cross-run comparison.

One parent run per pipeline execution (:func:`start_pipeline_run`, tagged ``semires.kind=pipeline``)
holds the summary params that tell executions apart (label ratio, refinement strategy...) and, at
the end, the evaluation metrics. Each stage opens its nested run with
:class:`semires.tracking.Tracker` under ``$SEMIRES_PARENT_RUN_ID``; :func:`stage_tags` gives the
tags every stage run carries: git commit, params hash, stage, Airflow dag_run id when there is one.
:func:`compare` reads the parent runs back with ``mlflow.search_runs``.

Only params.yaml values are logged as params, never environment variables (credentials live there).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from semires.tracking import PARENT_ENV, TrackingConfig, flatten_params

__all__ = ["PARENT_ENV", "compare", "dag_run_id", "end_pipeline_run", "format_table", "git_commit", "log_to_run",
           "params_hash", "plain", "register_model", "stage_tags", "start_pipeline_run", "tag_run"]

DAG_RUN_ENV = "SEMIRES_DAG_RUN_ID"
KIND_TAG = "semires.kind"  # "pipeline" on parent runs, "stage" on nested ones
EVAL_SPLITS = ("val", "testA", "testB")


def git_commit(root: str | Path | None = None) -> str:
    """HEAD commit of the repository at ``root`` (``+dirty`` when tracked files changed), or ``unknown``."""
    root = Path(root or os.getcwd())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def plain(value: Any) -> Any:
    """pydantic models and mappings to plain JSON-able dicts and lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def params_hash(sections: Mapping[str, Any]) -> str:
    """12-hex SHA-256 of the sections' canonical JSON: equal params, equal hash."""
    blob = json.dumps(plain(sections), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dag_run_id() -> str | None:
    """The Airflow dag_run id of this task (passed by the DAG, or Airflow's own context variable)."""
    return os.environ.get(DAG_RUN_ENV) or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or None


def stage_tags(stage: str, sections: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a stage run: kind, stage, git commit, params hash of ``sections``, dag_run id."""
    tags = {KIND_TAG: "stage", "semires.stage": stage, "semires.git_commit": git_commit(),
            "semires.params_hash": params_hash(sections)}
    if dag_run_id():
        tags["semires.dag_run_id"] = dag_run_id()
    return tags


def _client(cfg: TrackingConfig):
    import mlflow

    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient()


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


def start_pipeline_run(cfg: TrackingConfig, summary: Mapping[str, Any], run_name: str | None = None,
                       tags: Mapping[str, str] | None = None) -> str | None:
    """Create the RUNNING parent run of one pipeline execution; returns its id (None when disabled).

    ``summary`` (label ratio, strategy, preset...) is logged as params, secrets redacted.
    """
    if not cfg.enabled:
        return None
    client = _client(cfg)
    all_tags = {KIND_TAG: "pipeline", "semires.git_commit": git_commit(),
                "semires.params_hash": params_hash(summary), **(tags or {})}
    if dag_run_id():
        all_tags["semires.dag_run_id"] = dag_run_id()
    if run_name:
        all_tags["mlflow.runName"] = run_name
    from semires.mlflow_ui import ensure_training_view

    exp_id = _experiment_id(client, cfg.experiment)
    ensure_training_view(client, exp_id)  # opens on the training runs, scores as columns
    run = client.create_run(exp_id, tags=all_tags)
    for k, v in flatten_params(plain(summary)).items():
        client.log_param(run.info.run_id, k, v)
    return run.info.run_id


def end_pipeline_run(cfg: TrackingConfig, run_id: str, status: str = "FINISHED") -> None:
    """Mark the parent run FINISHED, FAILED or KILLED."""
    if cfg.enabled and run_id:
        _client(cfg).set_terminated(run_id, status=status)


def tag_run(cfg: TrackingConfig, run_id: str | None, tags: Mapping[str, str]) -> None:
    """Set tags on an existing run (finished ones too)."""
    if cfg.enabled and run_id:
        client = _client(cfg)
        for k, v in tags.items():
            client.set_tag(run_id, k, str(v))


def log_to_run(cfg: TrackingConfig, run_id: str | None, metrics: Mapping[str, float]) -> None:
    """Log numeric ``metrics`` onto an existing run (the parent), e.g. the final evaluation."""
    if not (cfg.enabled and run_id):
        return
    client = _client(cfg)
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            client.log_metric(run_id, k.replace("@", "_at_"), float(v))


def find_stage_run(cfg: TrackingConfig, stage: str, parent_run_id: str | None) -> str | None:
    """Id of the newest run of ``stage`` (tag ``semires.stage``) under ``parent_run_id`` (any parent when None)."""
    import mlflow

    _client(cfg)
    filt = f"tags.`semires.stage` = '{stage}'"
    if parent_run_id:
        filt += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    runs = mlflow.search_runs(experiment_names=[cfg.experiment], filter_string=filt, max_results=1,
                              order_by=["attributes.start_time DESC"], output_format="list")
    return runs[0].info.run_id if runs else None


def find_pipeline_run(cfg: TrackingConfig, key: str, value: str) -> str | None:
    """Id of the newest pipeline (parent) run tagged ``key=value``."""
    import mlflow

    _client(cfg)
    runs = mlflow.search_runs(experiment_names=[cfg.experiment], max_results=1, output_format="list",
                              filter_string=f"tags.`{KIND_TAG}` = 'pipeline' and tags.`{key}` = '{value}'",
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def run_status(cfg: TrackingConfig, run_id: str) -> str:
    """RUNNING, FINISHED, FAILED or KILLED."""
    return _client(cfg).get_run(run_id).info.status


def logged_models(cfg: TrackingConfig, run_id: str) -> list:
    """The MLflow logged models whose source is run ``run_id`` (oldest first)."""
    import mlflow

    exp_id = _client(cfg).get_run(run_id).info.experiment_id
    return mlflow.search_logged_models(experiment_ids=[exp_id], filter_string=f"source_run_id = '{run_id}'",
                                       output_format="list")


def log_model_file(cfg: TrackingConfig, run_id: str, model_file: str | Path, index_path: str | Path,
                   split: str = "val") -> str | None:
    """Log a semires model file (``best.safetensors``) as an MLflow model of run ``run_id``.

    For training functions that save weights but log no MLflow model: the model is rebuilt from the
    file and logged by :meth:`semires.tracking.Tracker.log_model` (pt2, tensor signature) with two
    expressions of ``split`` as the input example. Returns the model URI (None when disabled).
    """
    from semires.data.index import RefIndex
    from semires.engine.checkpoint import load_model
    from semires.engine.dataset import ExpressionDataset
    from semires.models import load_tokenizer
    from semires.tracking import Tracker

    model, model_cfg, info = load_model(model_file, "cpu")
    ds = ExpressionDataset.from_split(RefIndex.load(index_path), load_tokenizer(model_cfg.text_encoder),
                                      int(info.get("image_size") or 480), model_cfg.max_tokens, split=split,
                                      cache_images=False)
    example = ds.example_inputs(2)
    tracker = Tracker(cfg, Path(model_file).parent)
    with tracker.run("model", run_id=run_id) as trk:
        return trk.log_model(model, example)


def register_model(cfg: TrackingConfig, source_run_id: str, name: str, metrics: Mapping[str, float],
                   tags: Mapping[str, str] | None = None) -> str | None:
    """Register the model that run ``source_run_id`` logged under ``name``; returns the new version.

    The version carries ``metrics`` (e.g. ``val.mIoU``) and ``tags`` as version tags, so the
    registry shows how good each version is. Returns None when the run logged no model.
    """
    import mlflow

    client = _client(cfg)
    models = logged_models(cfg, source_run_id)
    if not models:
        return None
    version = mlflow.register_model(models[-1].model_uri, name, tags={**(tags or {}), "source_run_id": source_run_id})
    for k, v in metrics.items():
        client.set_model_version_tag(name, version.version, k, f"{float(v):.4f}")
    summary = ", ".join(f"{k} {float(v):.2f}" for k, v in metrics.items())
    client.update_model_version(name, version.version, description=f"semires student; {summary}")
    return str(version.version)


def compare(cfg: TrackingConfig, max_runs: int = 50, splits: tuple[str, ...] = EVAL_SPLITS) -> list[dict]:
    """Rows of the cross-run table from the parent runs of ``cfg.experiment``, newest first.

    Each row: run id, name, status, label_ratio, strategy, and ``<split>.mIoU`` / ``<split>.oIoU``
    (percent) for each split that the run's evaluation logged on the parent run.
    """
    import mlflow

    _client(cfg)
    runs = mlflow.search_runs(experiment_names=[cfg.experiment], filter_string=f"tags.`{KIND_TAG}` = 'pipeline'",
                              order_by=["attributes.start_time DESC"], max_results=max_runs, output_format="list")
    rows = []
    for r in runs:
        p, m = r.data.params, r.data.metrics
        row = {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
               "label_ratio": p.get("label_ratio", ""), "strategy": p.get("strategy", "")}
        for s in splits:
            for k in ("mIoU", "oIoU"):
                row[f"{s}.{k}"] = m.get(f"{s}.{k}")
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`compare` rows (numbers with 2 decimals, '-' where missing)."""
    if not rows:
        return "(no pipeline runs)"
    cols = [c for c in rows[0] if c != "status"]

    def cell(v):
        if v is None or v == "":
            return "-"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)
