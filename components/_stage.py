"""What every component shares: params, its nested MLflow run, a metrics file, exit codes.

A component is a typer app whose command reads params and runs its body inside :func:`stage`::

    p = _stage.params(params_path)
    with _stage.stage("split", p, {"split": p.split}, metrics) as st:
        ...                              # semires library calls, atomic writes
        st.log_metrics({...})

and ends with ``sys.exit(_stage.cli(APP))`` so a :class:`SemiresError` prints one line and exits 2.
The stage run is a :class:`semires.tracking.Tracker` run, nested under ``$SEMIRES_PARENT_RUN_ID``
and tagged by :func:`semires.runs.stage_tags`; library code that takes a tracker logs into it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from semires import io
from semires.config import Params, load_params, section
from semires.runs import PARENT_ENV, log_to_run, plain, stage_tags
from semires.tracking import Tracker, TrackingConfig, check_reachable

# Options every component shares (typer option objects can be reused as defaults).
INDEX = typer.Option(..., help="index JSON")
SPLITS = typer.Option(..., help="folder of the per-ratio split folders")
TEACHER = typer.Option(..., help="burn-in folder (its best.safetensors is the teacher)")
CANDIDATES = typer.Option(None, help="candidate store folder (all shards)")
REPORT = typer.Option(..., help="data-check report to write")
METRICS = typer.Option(..., help="stage metrics JSON to write")
CURVE = typer.Option(None, help="val mIoU/oIoU per evaluation, for `dvc plots` (JSON)")
PARAMS = typer.Option(Path("params.yaml"), help="params file")
PRETRAINED = typer.Option(None, help="pretrain stage folder: its backbone.safetensors starts the backbone (a folder "
                          "of a disabled pretrain stage holds none)")


def app(help: str) -> typer.Typer:
    """The typer app of a component (one command, no shell-completion flags)."""
    return typer.Typer(help=help, add_completion=False, pretty_exceptions_enable=False)


def params(path: str | Path) -> Params:
    """params.yaml validated as a whole, as ``components.configure`` does: every section with its model,
    so a misspelt section or key (``splt:``, ``split.ratio:``) fails here with the file named, instead of
    the stage running on defaults. Defaults where a section is absent; a missing file is an error."""
    from semires.errors import SemiresError
    from semires.pipeline import validate_params

    path = Path(path)
    if not path.is_file():
        raise SemiresError("params file not found", path, "pass --params with the run's params.yaml")
    p = load_params(path)
    try:
        validate_params(p)
    except SemiresError as exc:
        raise SemiresError(exc.what, path, exc.fix) from exc
    return p


def cfg(p: Params, name: str, model: type) -> Any:
    """Typed section ``name`` of ``p`` (``semires.config.section``)."""
    return section(p, name, model)


@dataclass(frozen=True)
class ResourceUsage:
    """What a stage process has used since it started its body: wall time, CPU time (user + system, its
    own and its finished child processes') and peak resident memory (the larger of its own and its
    largest child's). Logged to the stage's MLflow run as ``resource.*`` (never to the metrics file,
    which must be identical whoever runs the stage): what a cost model or a pod's request reads."""

    wall: float
    cpu: float

    @staticmethod
    def _cpu() -> float:
        import resource

        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    @classmethod
    def start(cls) -> ResourceUsage:
        return cls(time.perf_counter(), cls._cpu())

    def since(self) -> dict[str, float]:
        """``resource.wall_s``, ``resource.cpu_s`` and ``resource.peak_rss_mib`` (Linux reports KiB)."""
        import resource

        peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        return {"resource.wall_s": round(time.perf_counter() - self.wall, 3),
                "resource.cpu_s": round(self._cpu() - self.cpu, 3), "resource.peak_rss_mib": round(peak_kib / 1024, 1)}


@dataclass
class Stage:
    """The running stage: its MLflow settings, the metrics it reported, what it logs.

    In ``library_run`` mode the library function opens the stage's run itself; metrics and
    artifacts logged here are then held back and added to that run when the stage ends.
    """

    name: str
    tracker: Tracker
    tracking: TrackingConfig
    metrics: dict = field(default_factory=dict)
    deferred: list = field(default_factory=list)
    usage: ResourceUsage = field(default_factory=ResourceUsage.start)

    def log_metrics(self, metrics: Mapping[str, Any], to_parent: bool = False, to_run: bool = True) -> None:
        """Record numeric metrics for the metrics file and log them to the stage run (``to_run``; off when
        the library already logged them) and to the pipeline run (``to_parent``)."""
        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        self.metrics.update(clean)
        if to_run and self.tracker.enabled:
            self.tracker.log_metrics(clean)
        if to_parent and tracking_on(self.tracking):
            log_to_run(self.tracking, os.environ.get(PARENT_ENV), clean)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.tracker.enabled:
            self.tracker.log_artifact(path, artifact_path)
        else:
            self.deferred.append((Path(path), artifact_path))


def tracking_on(tracking: TrackingConfig) -> bool:
    """True when runs go to a tracking server (params ``mlflow.uri`` or ``$MLFLOW_TRACKING_URI``)."""
    return bool(tracking.enabled and (tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")))


@contextlib.contextmanager
def stage(name: str, p: Params, sections: Mapping[str, Any], metrics_path: str | Path | None = None,
          library_run: bool = False, outputs: Sequence[str | Path] = ()) -> Iterator[Stage]:
    """Run a stage body inside its nested MLflow run; on success write ``metrics_path`` (JSON).

    ``sections`` are the params the stage reads (``{"split": p.split, ...}``): logged as MLflow
    params and hashed into the ``semires.params_hash`` tag.

    ``library_run``: the library function opens (and on a retry resumes) the stage's run itself
    under the name ``name``; the component adds the stage tags, its metrics and artifacts to it.

    ``outputs``: files or folders the stage writes that are removed when it fails (a gate failed, an
    input was refused, it was interrupted), so that no later stage, and not DVC, can take them for a
    result. Only for outputs that are cheap to redo: resumable outputs (shards) are not listed.
    """
    limit_threads()
    with _removed_on_failure(outputs):
        yield from _stage_body(name, p, sections, metrics_path, library_run)


@contextlib.contextmanager
def _removed_on_failure(outputs: Sequence[str | Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if is_main_process():
            for out in map(Path, outputs):
                if out.is_dir() and not out.is_symlink():
                    shutil.rmtree(out, ignore_errors=True)
                else:
                    out.unlink(missing_ok=True)
        raise


def _stage_body(name: str, p: Params, sections: Mapping[str, Any], metrics_path: str | Path | None,
                library_run: bool) -> Iterator[Stage]:
    tracking = cfg(p, "mlflow", TrackingConfig)
    if not tracking_on(tracking):  # no server: no per-stage SQLite stores inside the stage outputs either
        tracking = tracking.model_copy(update={"enabled": False})
    else:  # an unreachable server fails the stage in seconds, before any work
        check_reachable(tracking.uri or os.environ["MLFLOW_TRACKING_URI"])
    tags = stage_tags(name, sections)
    arm_kill_switch(name)
    if library_run:
        st = Stage(name, Tracker(tracking, run_dir=Path("."), active=False), tracking)
        yield st
        _write_metrics(st, metrics_path)
        _complete_library_run(st, tags, st.usage.since())
        return
    tracker = Tracker(tracking, run_dir=Path("."))
    with tracker.run(name, tags=tags):
        tracker.log_params(plain(sections))
        st = Stage(name, tracker, tracking)
        yield st
        _write_metrics(st, metrics_path)
        if tracker.enabled and is_main_process():
            tracker.log_metrics(st.usage.since())


def is_main_process() -> bool:
    """False on non-zero ranks under ``torchrun`` (rank 0 alone writes files and logs)."""
    return os.environ.get("RANK", "0") == "0"


def limit_threads() -> None:
    """Apply ``SEMIRES_THREADS`` (torch intra-op threads) when set: on a small or shared machine one
    thread per process is often faster than two (benchmarks/results/train_speed_bench.json).
    A section's own ``threads`` field, where it has one, still wins: the library applies it later."""
    n = os.environ.get("SEMIRES_THREADS")
    if n:
        import torch

        torch.set_num_threads(int(n))


def _write_metrics(st: Stage, metrics_path: str | Path | None) -> None:
    if metrics_path is not None and is_main_process():
        io.write_json(metrics_path, st.metrics)
        st.log_artifact(metrics_path)


def _complete_library_run(st: Stage, tags: Mapping[str, str], usage: Mapping[str, float]) -> None:
    """Add tags, metrics, the resource usage and deferred artifacts to the run the library opened for this stage."""
    if not (tracking_on(st.tracking) and is_main_process()):
        return
    import mlflow

    parent = os.environ.get(PARENT_ENV)
    filt = f"tags.`semires.stage` = '{st.name}'" + (f" and tags.`mlflow.parentRunId` = '{parent}'" if parent else "")
    runs = mlflow.search_runs(experiment_names=[st.tracking.experiment], filter_string=filt, max_results=1,
                              order_by=["attributes.start_time DESC"], output_format="list")
    if not runs:
        return
    client, run_id = mlflow.MlflowClient(), runs[0].info.run_id
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    for k, v in {**st.metrics, **usage}.items():
        client.log_metric(run_id, k.replace("@", "_at_"), v)
    for path, artifact_path in st.deferred:
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path)


def cli(typer_app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a component app; returns its exit code (SemiresError -> one line on stderr, exit 2)."""
    from semires.cli import run_app

    return run_app(typer_app, argv)


def arm_kill_switch(name: str) -> None:
    """Fault injection for the retry tests: SIGKILL this process once a given file appears.

    Active only when ``SEMIRES_KILL_AT=<stage>=<path glob>`` names this stage (several specs may be
    comma-separated) and the marker file ``SEMIRES_KILL_MARKER`` does not exist yet. A watcher
    thread polls for a file matching the glob (e.g. the second pseudo-label shard, or last.pt) and
    kills the process the moment one is there, as an OOM kill or a lost node would. The marker is
    written first, so the retried task runs through.
    """
    specs = dict(s.split("=", 1) for s in os.environ.get("SEMIRES_KILL_AT", "").split(",") if "=" in s)
    marker = os.environ.get("SEMIRES_KILL_MARKER")
    if name not in specs or not marker or Path(marker).exists():
        return
    import glob
    import signal
    import threading

    pattern = specs[name]

    def watch() -> None:
        while not (hits := glob.glob(pattern)):
            time.sleep(0.02)
        Path(marker).write_text(f"{name} killed when {hits[0]} appeared\n")
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="semires-kill-switch").start()


def write_curve(path: str | Path, history: list[dict], keys: tuple[str, ...] = ("mIoU", "oIoU")) -> None:
    """Write a training curve for ``dvc plots``: ``[{"step", "mIoU", "oIoU"}, ...]`` (JSON, atomically)."""
    io.write_json(path, [{"step": int(h.get("step", i)), **{k: float(h[k]) for k in keys if k in h}}
                         for i, h in enumerate(history)])


def train_labeled(name: str, p: Params, index: Path, splits: Path, out: Path, burn: Any, metrics: Path,
                  curve: Path | None, pretrained: Path | None, sections: Mapping[str, Any] | None = None) -> dict:
    """Supervised training on the labeled split that ``pipeline.label_ratio`` picks, as stage ``name``
    (the burn-in and the step-matched baseline): the backbone starts from ``<pretrained>/backbone.safetensors``
    when the pretrain stage wrote one; logs the best val scores, the epoch and the steps; returns
    :func:`semires.train.supervised.train_supervised`'s result."""
    from semires.data.splits import ratio_dir
    from semires.models.config import ModelConfig
    from semires.pipeline import PipelineConfig
    from semires.train.supervised import resolve_labeled, train_supervised

    pipe, model = cfg(p, "pipeline", PipelineConfig), cfg(p, "model", ModelConfig)
    if pretrained is not None and (pretrained / "backbone.safetensors").is_file():
        model = model.model_copy(update={"backbone_weights": str(pretrained / "backbone.safetensors")})
    with stage(name, p, {"pipeline": pipe, "model": model, "burn_in": burn, **(sections or {})}, metrics,
               library_run=True) as st:
        result = train_supervised(index, resolve_labeled(ratio_dir(splits, pipe.label_ratio)), out, model, burn,
                                  st.tracking, run_name=name)
        best = result.get("best") or {}
        if curve:
            write_curve(curve, result.get("history") or [])
        st.log_metrics({**{f"val.{k}": v for k, v in best.items()}, "best_epoch": result.get("best_epoch") or 0,
                        "steps": result.get("steps", 0)})
    typer.echo(f"{name} in {out}: best val mIoU {best.get('mIoU', float('nan')):.2f}, "
               f"oIoU {best.get('oIoU', float('nan')):.2f} (epoch {result.get('best_epoch')}, "
               f"{result.get('steps', 0)} steps)")
    return result
