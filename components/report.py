"""Stage ``report``: one summary table for this pipeline run, and the student in the model registry.

    python -m components.report --metrics-dir metrics --out reports/summary.md \
        --metrics metrics/report.json

Reads the stage metrics files of this run (``<metrics-dir>/<stage>.json``), writes a Markdown
summary (what was trained, teacher vs student per split, pseudo-label quality) and, with a tracking
server, registers the student model with its evaluation metrics (``report.model_name``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from components import _stage
from semires.pipeline import ReportConfig, pipeline_summary

APP = _stage.app(__doc__)

SPLIT_KEYS = ("n", "mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9")


STAGES = ("data", "split", "candidates", "burn_in", "pseudo_label", "refine", "train_student", "evaluate")


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


def summary_markdown(summary: dict, m: dict[str, dict]) -> tuple[str, dict]:
    """The run's Markdown summary and its headline metrics (``<split>.mIoU`` / ``.oIoU``)."""
    ev = m.get("evaluate", {})
    splits = sorted({k.split(".", 1)[0] for k in ev}, key=lambda s: ("val", "test", "testA", "testB").index(s)
                    if s in ("val", "test", "testA", "testB") else 9)
    lines = ["# semires pipeline run", "", "| " + " | ".join(summary) + " |",
             "|" + "---|" * len(summary), "| " + " | ".join(str(v) for v in summary.values()) + " |", "",
             "## Student (EMA teacher kept by val oIoU), percent", "",
             "| split | " + " | ".join(SPLIT_KEYS) + " |", "|---|" + "---|" * len(SPLIT_KEYS)]
    headline = {}
    for s in splits:
        cells = []
        for k in SPLIT_KEYS:
            v = ev.get(f"{s}.{k}")
            cells.append("-" if v is None else (f"{int(v)}" if k == "n" else f"{v:.2f}"))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
        for k in ("mIoU", "oIoU"):
            if f"{s}.{k}" in ev:
                headline[f"{s}.{k}"] = ev[f"{s}.{k}"]
    b, r, c = m.get("burn_in", {}), m.get("refine", {}), m.get("candidates", {})
    lines += ["", "## Stages", "",
              (f"- candidates: {int(c.get('images', 0))} images, "
               f"{c.get('candidates/per_image_mean', float('nan')):.1f} per image on average"),
              (f"- burn-in teacher (labeled only): val mIoU {b.get('val.mIoU', float('nan')):.2f}, "
               f"oIoU {b.get('val.oIoU', float('nan')):.2f}"),
              f"- pseudo-labels: {int(m.get('pseudo_label', {}).get('expressions', 0))} unlabeled expressions",
              (f"- refinement: match rate {r.get('match_rate', float('nan')):.1f}%, pseudo-label mIoU "
               f"{r.get('pseudo.before.mIoU', float('nan')):.2f} -> {r.get('pseudo.after.mIoU', float('nan')):.2f}")]
    if "val.mIoU" in headline and "val.mIoU" in b:
        headline["gain.val.mIoU"] = headline["val.mIoU"] - b["val.mIoU"]
        lines.append(f"- student vs teacher on val: {headline['gain.val.mIoU']:+.2f} mIoU")
    return "\n".join(lines) + "\n", headline


@APP.command()
def main(metrics_dir: Path = typer.Option(None, help="folder of this run's stage metrics JSON files"),
         student: Path = typer.Option(None, help="student folder (its best.safetensors is logged as the MLflow "
                                                 "model when the training run logged none)"),
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
    text, headline = summary_markdown(summary, stage_metrics(metrics_dir, stage_metrics_))
    with _stage.stage("report", p, {"report": cfg}, metrics) as st:
        io.write_text(out, text)
        st.log_artifact(out)
        st.log_metrics(headline, to_parent=True)
    typer.echo(text)
    # after the report's own run has ended: logging a model resumes the student's run
    if cfg.register_model and _stage.tracking_on(st.tracking):
        run = find_stage_run(st.tracking, "train_student", os.environ.get(PARENT_ENV))
        if run and student and index and not logged_models(st.tracking, run):
            log_model_file(st.tracking, run, student / "best.safetensors", index, cfg.primary_split)
        primary = {k: v for k, v in headline.items() if k.startswith(f"{cfg.primary_split}.")}
        version = register_model(st.tracking, run, cfg.model_name, primary,
                                 tags={k: str(v) for k, v in summary.items()}) if run else None
        if version:
            tag_run(st.tracking, st.tracker.run_id, {"semires.registered_model": f"{cfg.model_name}/{version}"})
            typer.echo(f"registered {cfg.model_name} version {version} (from run {run})")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
