"""Stage ``pseudo_label``: the burn-in teacher's predictions on every unlabeled expression, then its gate.

    python -m components.pseudo_label --index data/index.json --splits data/splits \
        --teacher models/burn_in --out data/pseudo --report reports/checks/pseudo_label.txt \
        --metrics metrics/pseudo_label.json

Shards are the unit of resume: a retried task keeps every finished shard.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.checks import ChecksConfig, check_pseudo_labels
from semires.pipeline import PipelineConfig

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         splits: Path = _stage.SPLITS,
         teacher: Path = _stage.TEACHER,
         out: Path = typer.Option(..., help="pseudo-label folder to write"),
         report: Path = _stage.REPORT,
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.data.splits import load_split, ratio_dir
    from semires.pseudo.config import PseudoLabelConfig
    from semires.pseudo.label import run_pseudo_label

    p = _stage.params(params)
    pipe, cfg = _stage.cfg(p, "pipeline", PipelineConfig), _stage.cfg(p, "pseudo_label", PseudoLabelConfig)
    checks = _stage.cfg(p, "checks", ChecksConfig).labels
    unlabeled = load_split(ratio_dir(splits, pipe.label_ratio)).unlabeled
    with _stage.stage("pseudo_label", p, {"pipeline": pipe, "pseudo_label": cfg, "checks.labels": checks}, metrics,
                      library_run=True) as st:
        manifest = run_pseudo_label(index, unlabeled, teacher / "best.safetensors", out, cfg, st.tracking)
        result = check_pseudo_labels(out, index, unlabeled, report_path=report, cfg=checks)
        fg = next(o for o in result.outcomes if o.expectation == "expect_column_mean_to_be_between").observed
        st.log_metrics({"expressions": manifest["expressions"], "images": manifest["images"],
                        "shards": len(manifest["shards"]), "mean_fg_frac": float(fg)})
        typer.echo(f"pseudo-labels in {out}: {manifest['expressions']} expressions; {result}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
