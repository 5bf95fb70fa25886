"""MLflow helpers every stage uses: one run per stage, nested under the pipeline's run.

- Tracking URI: ``mlflow.uri`` in params, else ``MLFLOW_TRACKING_URI``, else a local SQLite
  store ``<run_dir>/mlflow.db`` with artifacts in ``<run_dir>/mlartifacts``.
- Parent: ``SEMIRES_PARENT_RUN_ID`` (set by the pipeline) makes each stage's run a nested child.
- Params are the resolved config flattened to ``section.key`` names; values of keys that look
  like secrets (password, token, secret, access/api key ...) and passwords inside URLs are
  redacted, so a credential can never end up in MLflow.
- Models are logged with ``mlflow.pytorch.log_model`` in the ``pt2`` format (torch.export, no
  pickle) with an explicit tensor signature.

:class:`Tracker` is a no-op when tracking is disabled or on non-zero DDP ranks, so callers never
branch on it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from semires.config import Section

PARENT_ENV = "SEMIRES_PARENT_RUN_ID"
REDACTED = "***"
_SECRET_WORDS = {"password", "passwd", "secret", "token", "credential", "credentials", "apikey", "auth"}
_SECRET_PAIRS = ("api_key", "access_key", "secret_key", "private_key", "session_key")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")


class TrackingConfig(Section):
    """MLflow settings (the ``mlflow`` section of ``params.yaml``)."""

    enabled: bool = Field(True, description="log runs to MLflow")
    uri: str | None = Field(None, description="tracking URI; None = $MLFLOW_TRACKING_URI, else a SQLite store "
                               "in the run directory")
    experiment: str = Field("semires", description="MLflow experiment name")
    log_model: bool = Field(True, description="log the trained model (pt2 format, with signature)")


def is_secret_key(key: str) -> bool:
    """True for config keys whose values must never be logged (``aws_secret_access_key``, ``token`` ...)."""
    k = key.lower()
    if any(pair in k for pair in _SECRET_PAIRS):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", k))


def redact_value(value: Any) -> Any:
    """Strip a password embedded in a URL (``scheme://user:pw@host`` -> ``scheme://user:***@host``)."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)
    return value


def flatten_params(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b.c": value}`` with secrets redacted and lists as strings."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif is_secret_key(str(key)):
            out[name] = REDACTED
        elif isinstance(value, (list, tuple)):
            out[name] = str([redact_value(v) for v in value])
        else:
            out[name] = redact_value(value)
    return out


def resolve_uri(cfg: TrackingConfig, run_dir: str | Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment or None to let the server decide)."""
    uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{run_dir / 'mlflow.db'}", (run_dir / "mlartifacts").as_uri()


# MLflow's own defaults retry an unreachable server for minutes (7 retries, backoff factor 2, 120 s timeout);
# a stage should fail in seconds instead. Applied only where the user has not set them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_reachable: set[str] = set()


def check_reachable(uri: str, attempts: int = 3, timeout_s: float = 2.0, pause_s: float = 1.0) -> None:
    """Fail fast when an ``http(s)`` tracking server does not answer: ``attempts`` tries of ``timeout_s``
    each, ``pause_s`` apart (about 9 s at most), then one :class:`SemiresError` line naming the URI and
    the way out. Any HTTP answer counts as reachable. Other URIs (SQLite, files) are not probed; a
    server found once is not probed again in this process. Sets MLflow's HTTP retry limits
    (:data:`HTTP_DEFAULTS`, unless set) so an outage later in the run also ends in seconds."""
    import time
    import urllib.error
    import urllib.request

    from semires.errors import SemiresError

    if not uri.startswith(("http://", "https://")) or uri in _reachable:
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    reason = ""
    for i in range(attempts):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
                pass
            _reachable.add(uri)
            return
        except urllib.error.HTTPError:  # the server answered (an old one may lack /health)
            _reachable.add(uri)
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = str(getattr(exc, "reason", exc))
        if i + 1 < attempts:
            time.sleep(pause_s)
    raise SemiresError(f"MLflow tracking server {redact_value(uri)} is unreachable after {attempts} tries "
                       f"({reason})", None, "start it (`semires pipeline services up`), or run without tracking: "
                       "set mlflow.enabled: false in params.yaml, or unset MLFLOW_TRACKING_URI and mlflow.uri")


class Tracker:
    """One MLflow run (or nothing, when disabled). Use :meth:`run` as a context manager."""

    def __init__(self, cfg: TrackingConfig | None, run_dir: str | Path, active: bool = True):
        self.cfg = cfg or TrackingConfig()
        self.run_dir = Path(run_dir)
        self.enabled = bool(self.cfg.enabled and active)
        self.run_id: str | None = None
        self.uri: str | None = None

    @contextlib.contextmanager
    def run(self, run_name: str, tags: Mapping[str, str] | None = None, run_id: str | None = None) -> Iterator[Tracker]:
        """Start (or, with ``run_id``, resume) a run; nested under ``$SEMIRES_PARENT_RUN_ID`` when set.

        A run that raises ends with status FAILED; its id stays in :attr:`run_id`.
        """
        if not self.enabled:
            yield self
            return
        import mlflow

        self.uri, artifact_location = resolve_uri(self.cfg, self.run_dir)
        check_reachable(self.uri)
        mlflow.set_tracking_uri(self.uri)
        exp = mlflow.get_experiment_by_name(self.cfg.experiment)
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(self.cfg.experiment, artifact_location)
        parent = os.environ.get(PARENT_ENV) or None
        all_tags = {"semires.stage": run_name, **(tags or {})}
        kwargs = {"run_id": run_id} if run_id else {"run_name": run_name, "experiment_id": exp_id, "tags": all_tags}
        if parent and not run_id:
            kwargs.update(nested=True, parent_run_id=parent)
        elif run_id and mlflow.active_run() is not None:
            kwargs["nested"] = True  # resuming a stage's run inside a caller's open run (e.g. a benchmark's parent)
        with mlflow.start_run(**kwargs) as active:
            self.run_id = active.info.run_id
            yield self

    # Every logger below is a no-op without an active run.
    def log_params(self, cfg: Mapping[str, Any]) -> None:
        """Log a (nested) config as flat params, secrets redacted (see :func:`flatten_params`)."""
        if self.enabled and self.run_id:
            import mlflow

            flat = flatten_params(cfg)
            existing = mlflow.get_run(self.run_id).data.params  # a resumed run keeps its params
            mlflow.log_params({k: v for k, v in flat.items() if k not in existing})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "") -> None:
        if self.enabled and self.run_id:
            import mlflow

            clean = {f"{prefix}{k}".replace("@", "_at_"): float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and math.isfinite(v)}
            mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled and self.run_id and Path(path).exists():
            import mlflow

            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.enabled and self.run_id:
            import mlflow

            mlflow.set_tags(dict(tags))

    def log_model(self, model, example_inputs: tuple, name: str = "model") -> str | None:
        """Log a torch model (pt2 / torch.export, no pickle) with an explicit tensor signature.

        ``example_inputs`` are the forward's tensors with a batch of >= 2 (batch is exported dynamic).
        Returns the model URI, or None when tracking is off or ``log_model`` is false.
        """
        if not (self.enabled and self.run_id and self.cfg.log_model):
            return None
        import mlflow
        import torch

        from semires.models.text import text_cache_disabled

        signature = model_signature(model, example_inputs)
        model = model.eval()
        with text_cache_disabled(model), torch.no_grad():
            info = mlflow.pytorch.log_model(model, name=name, signature=signature,
                                            input_example=tuple(t.cpu() for t in example_inputs),
                                            serialization_format="pt2", pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        return info.model_uri


def model_signature(model, example_inputs: tuple):
    """MLflow signature of ``forward(images, input_ids, attention_mask) -> logits`` (batch dynamic)."""
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from semires.models.text import text_cache_disabled

    names = ("images", "input_ids", "attention_mask")
    inputs = Schema([TensorSpec(np.dtype(str(t.dtype).replace("torch.", "")), (-1, *t.shape[1:]), n)
                     for n, t in zip(names, example_inputs)])
    with text_cache_disabled(model), torch.no_grad():
        out = model.eval()(*example_inputs)
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, *out.shape[1:]), "logits")])
    return ModelSignature(inputs=inputs, outputs=outputs)
