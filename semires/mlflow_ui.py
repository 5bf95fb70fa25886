"""How the pipeline's experiment opens in MLflow's UI: the model-training view, scores as columns.

MLflow 3 opens an experiment by its kind (experiment tag ``mlflow.experimentKind``): GenAI
experiments on the traces overview, ``custom_model_development`` on the training runs table.
The runs table's layout (visible columns, order) can be saved as an experiment tag
``mlflow.sharedViewState.<id>`` and opened with the link parameter ``viewStateShareKey=<id>``
(the UI's "share view" mechanism); the link parameter ``workflowType=machine_learning`` puts the
sidebar on "Model training". :func:`ensure_training_view` sets the tags on the experiment;
:func:`runs_link` is the link the demo prints.

    python -m semires.mlflow_ui --params params.yaml     # prints the link (creates the view if needed)
"""

from __future__ import annotations

import json
import os
from typing import Any

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_ID = "semires-scores"
VIEW_NAME = "semires: pipeline runs and their scores"
SCORE_SPLITS = ("val", "testA", "testB")


def score_columns(splits: tuple[str, ...] = SCORE_SPLITS) -> list[str]:
    """Run-table column keys of the student's scores, as the UI names them (``metrics.`val.mIoU```):
    the evaluate stage logs ``<split>.mIoU`` / ``.oIoU`` (percent) on each pipeline run."""
    return [f"metrics.`{s}.{k}`" for s in splits for k in ("mIoU", "oIoU")]


def view_state(splits: tuple[str, ...] = SCORE_SPLITS) -> dict[str, Any]:
    """The runs-table state the saved view restores: newest runs first, the scores and what tells
    runs apart (label ratio, strategy) as visible columns."""
    return {"orderByKey": "attributes.start_time", "orderByAsc": False,
            "selectedColumns": ["params.`label_ratio`", "params.`strategy`", *score_columns(splits)]}


def ensure_training_view(client, experiment_id: str) -> None:
    """Tag the experiment as model training and save the scores view on it (idempotent).

    ``client``: an ``mlflow.MlflowClient``. A kind the user set on the experiment is kept.
    """
    exp = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    # plain JSON state: the UI reads it as is (it also accepts its own compressed envelope)
    value = json.dumps(view_state(), separators=(",", ":"))
    if exp.tags.get(SHARED_VIEW_PREFIX + VIEW_ID) != value:
        client.set_experiment_tag(experiment_id, SHARED_VIEW_PREFIX + VIEW_ID, value)


def runs_link(tracking_url: str, experiment_id: str) -> str:
    """The link to the experiment's training-runs table with the scores view."""
    return (f"{tracking_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_ID}")


def experiment_link(cfg, tracking_url: str | None = None) -> str | None:
    """The runs link of ``cfg.experiment`` (a :class:`semires.tracking.TrackingConfig`) on the tracking
    server, after making sure its view exists; None when tracking is off or there is no server."""
    url = tracking_url or cfg.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not (cfg.enabled and url and url.startswith("http")):
        return None
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(cfg.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(cfg.experiment)
    ensure_training_view(client, exp_id)
    return runs_link(url, exp_id)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from semires.config import load_params, section
    from semires.tracking import TrackingConfig

    ap = argparse.ArgumentParser(description="Print the MLflow link of the pipeline's training runs.")
    ap.add_argument("--params", default="params.yaml")
    a = ap.parse_args(argv)
    link = experiment_link(section(load_params(a.params), "mlflow", TrackingConfig))
    print(link or "(no MLflow server: set MLFLOW_TRACKING_URI)")
    return 0 if link else 1


if __name__ == "__main__":
    raise SystemExit(main())
