"""Stage ``report``: one summary table for this pipeline run, and the student in the model registry.

    python -m components.report --metrics-dir metrics --student models/student --teacher models/burn_in \
        --out reports/summary.md --metrics metrics/scores.json

Reads the stage metrics files of this run (``<metrics-dir>/<stage>.json``, one per stage that
semires/stages.py lists), writes a Markdown summary (what was trained, teacher vs student per
split, pseudo-label quality), writes the scores runs are compared by (``--metrics``: the file
``dvc metrics show`` / ``dvc exp show`` list; see :func:`scores`) and, with a tracking server,
logs them on the pipeline run and registers the student model with its evaluation metrics
(``report.model_name``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from components import _stage
from semires.pipeline import ReportConfig, pipeline_summary
from semires.stages import metric_stages

APP = _stage.app(__doc__)

SPLIT_KEYS = ("n", "mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9")


# the stages whose metrics files this stage reads, as semires/stages.py names their files
STAGES = tuple(st.metrics_name or st.name for st in metric_stages())
SPLIT_ORDER = ("val", "test", "testA", "testB")
BASELINES = ("teacher.", "supervised.")  # the evaluate stage's prefixes of the supervised-only baselines' scores


def stage_metrics(metrics_dir: Path | None, pairs: list[str]) -> dict[str, dict]:
    """Each stage's metrics: ``<metrics_dir>/<stage>.json``, or ``--stage-metrics stage=path`` (Kubeflow)."""
    from semires.errors import SemiresError

    paths = {s: metrics_dir / f"{s}.json" for s in STAGES} if metrics_dir else {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        if name not in STAGES or not path:
            raise SemiresError(f"--stage-metrics {pair!r}: expected <stage>=<path> with a stage of {STAGES}")
        paths[name] = Path(path)
    return {s: json.loads(p.read_text()) if p.is_file() else {} for s, p in paths.items()}


def _splits(ev: dict) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in ev if "." in k and not k.startswith(BASELINES)},
                  key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s))


def training_time(folder: Path | None) -> float | None:
    """Seconds of training a training folder's ``metrics.json`` records (``train_s``; summed over
    resumed processes), or None when there is none."""
    p = folder / "metrics.json" if folder else None
    if not (p and p.is_file()):
        return None
    value = json.loads(p.read_text()).get("train_s")
    return float(value) if isinstance(value, (int, float)) else None


def scores(m: dict[str, dict], student_s: float | None = None, teacher_s: float | None = None) -> dict[str, float]:
    """The numbers runs are compared by, in the order `dvc exp show` lists them (percent, seconds).

    ``student.<split>.mIoU`` / ``.oIoU`` for every evaluated split; ``teacher.val.*`` (the burn-in
    teacher: scored by the evaluate stage on the same split when it was given ``--teacher``, else its
    val subset score while training); ``supervised.val.*`` (the step-matched supervised baseline, when
    the evaluate stage scored one); ``gain.val.*`` (student minus teacher); ``gain_matched.val.*``
    (student minus the step-matched baseline); the
    pseudo-label lift of refinement (``pseudo.lift.*``: refined minus raw pseudo-label IoU against
    the truth) and its ``pseudo.match_rate``; training wall time of teacher and student
    (``time.*_train_s``). Keys whose source is missing are left out.
    """
    ev, b, r = m.get("evaluate", {}), m.get("burn_in", {}), m.get("refine", {})
    out: dict[str, float] = {}
    for s in _splits(ev):
        for k in ("mIoU", "oIoU"):
            if f"{s}.{k}" in ev:
                out[f"student.{s}.{k}"] = ev[f"{s}.{k}"]
    for k in ("mIoU", "oIoU"):  # the teacher on the same full split as the student, else its training-time score
        if f"teacher.val.{k}" in ev:
            out[f"teacher.val.{k}"] = ev[f"teacher.val.{k}"]
        elif f"val.{k}" in b:
            out[f"teacher.val.{k}"] = b[f"val.{k}"]
    for k in ("mIoU", "oIoU"):
        if f"supervised.val.{k}" in ev:
            out[f"supervised.val.{k}"] = ev[f"supervised.val.{k}"]
    for k in ("mIoU", "oIoU"):
        if f"student.val.{k}" in out and f"teacher.val.{k}" in out:
            out[f"gain.val.{k}"] = out[f"student.val.{k}"] - out[f"teacher.val.{k}"]
        if f"student.val.{k}" in out and f"supervised.val.{k}" in out:
            out[f"gain_matched.val.{k}"] = out[f"student.val.{k}"] - out[f"supervised.val.{k}"]
    for k in ("mIoU", "oIoU"):
        if f"delta_{k}" in r:
            out[f"pseudo.lift.{k}"] = r[f"delta_{k}"]
    if "match_rate" in r:
        out["pseudo.match_rate"] = r["match_rate"]
    for name, value in (("teacher", teacher_s), ("student", student_s)):
        if value is not None:
            out[f"time.{name}_train_s"] = value
    return out


def side_by_side(ev: dict, splits: list[str]) -> list[str]:
    """Markdown lines: per split, the student's mIoU beside the supervised-only baselines the evaluate
    stage scored (the burn-in teacher; the step-matched run) and its gain over each; [] when it scored none."""
    cols = [(p, name) for p, name in (("teacher", "burn-in"), ("supervised", "step-matched supervised"))
            if any(f"{p}.{s}.mIoU" in ev for s in splits)]
    if not cols:
        return []
    lines = ["", "## Student against supervised only (same labels), mIoU", "",
             "| split | " + " | ".join(f"supervised only: {name}" for _, name in cols) + " | SemiRES student | "
             + " | ".join(f"gain over {name}" for _, name in cols) + " |",
             "|---|" + "---|" * (2 * len(cols) + 1)]
    for s in splits:
        v, base = ev.get(f"{s}.mIoU"), [ev.get(f"{p}.{s}.mIoU") for p, _ in cols]
        if v is None or None in base:
            continue
        lines.append(f"| {s} | " + " | ".join(f"{t:.2f}" for t in base) + f" | {v:.2f} | "
                     + " | ".join(f"{v - t:+.2f}" for t in base) + " |")
    return lines


def summary_markdown(summary: dict, m: dict[str, dict]) -> str:
    """The run's Markdown summary: what was trained, the student per split, the stages."""
    ev = m.get("evaluate", {})
    splits = _splits(ev)
    lines = ["# semires pipeline run", "", "| " + " | ".join(summary) + " |",
             "|" + "---|" * len(summary), "| " + " | ".join(str(v) for v in summary.values()) + " |", "",
             "## Student (EMA teacher kept by val oIoU), percent", "",
             "| split | " + " | ".join(SPLIT_KEYS) + " |", "|---|" + "---|" * len(SPLIT_KEYS)]
    for s in splits:
        cells = []
        for k in SPLIT_KEYS:
            v = ev.get(f"{s}.{k}")
            cells.append("-" if v is None else (f"{int(v)}" if k == "n" else f"{v:.2f}"))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += side_by_side(ev, splits)
    b, r, c = m.get("burn_in", {}), m.get("refine", {}), m.get("candidates", {})
    lines += ["", "## Stages", "",
              (f"- candidates: {int(c.get('images', 0))} images, "
               f"{c.get('candidates/per_image_mean', float('nan')):.1f} per image on average"),
              (f"- burn-in teacher (labeled only): val mIoU {b.get('val.mIoU', float('nan')):.2f}, "
               f"oIoU {b.get('val.oIoU', float('nan')):.2f}"),
              f"- pseudo-labels: {int(m.get('pseudo_label', {}).get('expressions', 0))} unlabeled expressions",
              (f"- refinement: match rate {r.get('match_rate', float('nan')):.1f}%, pseudo-label mIoU "
               f"{r.get('pseudo.before.mIoU', float('nan')):.2f} -> {r.get('pseudo.after.mIoU', float('nan')):.2f}")]
    if "val.mIoU" in ev and "val.mIoU" in b and "teacher.val.mIoU" not in ev:  # else the side-by-side says it
        lines.append(f"- student vs teacher on val: {ev['val.mIoU'] - b['val.mIoU']:+.2f} mIoU")
    return "\n".join(lines) + "\n"


@APP.command()
def main(metrics_dir: Path = typer.Option(None, help="folder of this run's stage metrics JSON files"),
         student: Path = typer.Option(None, help="student folder (its best.safetensors is logged as the MLflow "
                                                 "model when the training run logged none)"),
         teacher: Path = typer.Option(None, help="burn-in folder (its metrics.json gives the teacher's training time)"),
         index: Path = typer.Option(None, help="index JSON (input example of the logged model)"),
         stage_metrics_: list[str] = typer.Option([], "--stage-metrics", help="STAGE=PATH, instead of --metrics-dir"),
         out: Path = typer.Option(..., help="Markdown summary to write"),
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires import io
    from semires.runs import PARENT_ENV, find_stage_run, log_model_file, logged_models, register_model, tag_run

    p = _stage.params(params)
    cfg = _stage.cfg(p, "report", ReportConfig)
    summary = pipeline_summary(p)
    m = stage_metrics(metrics_dir, stage_metrics_)
    text = summary_markdown(summary, m)
    headline = scores(m, training_time(student), training_time(teacher))
    with _stage.stage("report", p, {"report": cfg}) as st:
        io.write_text(out, text)
        st.log_artifact(out)
        st.log_metrics(headline, to_parent=True)
        # in scores() order, student first (not sorted): DVC shows a metrics file's keys in file order
        io.write_text(metrics, json.dumps(st.metrics, indent=2) + "\n")  # finite values only
        st.log_artifact(metrics)
    typer.echo(text)
    # after the report's own run has ended: logging a model resumes the student's run
    if cfg.register_model and _stage.tracking_on(st.tracking):
        run = find_stage_run(st.tracking, "train_student", os.environ.get(PARENT_ENV))
        if run and student and index and not logged_models(st.tracking, run):
            log_model_file(st.tracking, run, student / "best.safetensors", index, cfg.primary_split)
        primary = {k.removeprefix("student."): v for k, v in headline.items()
                   if k.startswith(f"student.{cfg.primary_split}.")}
        version = register_model(st.tracking, run, cfg.model_name, primary,
                                 tags={k: str(v) for k, v in summary.items()}) if run else None
        if version:
            tag_run(st.tracking, st.tracker.run_id, {"semires.registered_model": f"{cfg.model_name}/{version}"})
            typer.echo(f"registered {cfg.model_name} version {version} (from run {run})")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
