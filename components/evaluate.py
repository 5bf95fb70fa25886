"""Stage ``evaluate``: a trained model on the held-out splits (mIoU, oIoU, prec@X, overlays).

    python -m components.evaluate --index data/index.json --model models/student --teacher models/burn_in \
        --out eval/student --metrics metrics/evaluate.json

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
         params: Path = _stage.PARAMS) -> None:
    from semires.eval.evaluate import evaluate_checkpoint

    p = _stage.params(params)
    cfg = _stage.cfg(p, "evaluate", EvaluateConfig)
    checkpoint = model / "best.safetensors" if model.is_dir() else model
    with _stage.stage("evaluate", p, {"evaluate": cfg}, metrics) as st:
        res = evaluate_checkpoint(index, checkpoint, out, splits=cfg.splits, batch_size=cfg.batch_size,
                                  image_size=cfg.image_size, device=cfg.device, amp=cfg.amp, overlays=cfg.overlays,
                                  num_workers=cfg.num_workers, tracker=st.tracker)
        flat = {f"{split}.{k}": v for split, m in res["splits"].items() for k, v in m.items()}
        st.log_metrics(flat, to_parent=True, to_run=False)  # evaluate_checkpoint logged them on the stage run
        for split, m in res["splits"].items():
            typer.echo(f"{split:>6}: n={m['n']} mIoU {m['mIoU']:.2f} oIoU {m['oIoU']:.2f} prec@0.5 {m['prec@0.5']:.2f}")
        if teacher is not None:
            base = evaluate_checkpoint(index, teacher / "best.safetensors", out / "teacher", splits=cfg.splits,
                                       batch_size=cfg.batch_size, image_size=cfg.image_size, device=cfg.device,
                                       amp=cfg.amp, overlays=cfg.overlays, num_workers=cfg.num_workers)
            st.log_metrics({f"teacher.{split}.{k}": v for split, m in base["splits"].items() for k, v in m.items()},
                           to_parent=True)
            for split, m in base["splits"].items():
                typer.echo(f"{split:>6}: burn-in teacher mIoU {m['mIoU']:.2f} oIoU {m['oIoU']:.2f}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
