"""Stage ``evaluate``: a trained model on the held-out splits (mIoU, oIoU, prec@X, overlays).

    python -m components.evaluate --index data/index.json --model models/student --teacher models/burn_in \
        --baseline models/supervised --out eval/student --metrics metrics/evaluate.json

Metrics ``<split>.mIoU``, ``<split>.oIoU``... go to the stage run and to the pipeline run (where
`semires pipeline compare` reads them). A rerun on the same checkpoint returns the stored results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.pipeline import EvaluateConfig

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         model: Path = typer.Option(..., help="training folder (its best.safetensors) or a model file"),
         out: Path = typer.Option(..., help="folder for results.json, per_expression.json, overlays"),
         metrics: Path = _stage.METRICS,
         teacher: Path = typer.Option(None, help="burn-in folder: its teacher (supervised only) is scored on the "
                                      "same splits into <out>/teacher, for the report's side-by-side"),
         baseline: Path = typer.Option(None, help="step-matched supervised folder (stage supervised): scored into "
                                       "<out>/supervised (skipped when the stage was disabled)"),
         params: Path = _stage.PARAMS) -> None:
    from semires.eval.evaluate import evaluate_checkpoint

    p = _stage.params(params)
    cfg = _stage.cfg(p, "evaluate", EvaluateConfig)
    checkpoint = model / "best.safetensors" if model.is_dir() else model
    options = cfg.model_dump(include={"splits", "batch_size", "image_size", "device", "amp", "overlays", "num_workers"})
    options["text_pool"] = {}  # the three models share their frozen text encoder's sentence features
    with _stage.stage("evaluate", p, {"evaluate": cfg}, metrics) as st:
        res = evaluate_checkpoint(index, checkpoint, out, tracker=st.tracker, **options)
        flat = {f"{split}.{k}": v for split, m in res["splits"].items() for k, v in m.items()}
        st.log_metrics(flat, to_parent=True, to_run=False)  # evaluate_checkpoint logged them on the stage run
        for split, m in res["splits"].items():
            typer.echo(f"{split:>6}: n={m['n']} mIoU {m['mIoU']:.2f} oIoU {m['oIoU']:.2f} prec@0.5 {m['prec@0.5']:.2f}")
        # the baselines on the same splits, for the report's side-by-side: "<prefix>.<split>.<metric>"
        for prefix, folder, label in (("teacher", teacher, "burn-in teacher"),
                                      ("supervised", baseline, "step-matched supervised")):
            if folder is None or (folder / "disabled.json").is_file():  # a disabled stage's folder
                continue
            base = evaluate_checkpoint(index, folder / "best.safetensors", out / prefix, **options)
            st.log_metrics({f"{prefix}.{split}.{k}": v for split, m in base["splits"].items() for k, v in m.items()},
                           to_parent=True)
            for split, m in base["splits"].items():
                typer.echo(f"{split:>6}: {label} mIoU {m['mIoU']:.2f} oIoU {m['oIoU']:.2f}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
