"""Stage ``burn_in``: the supervised teacher, trained on the labeled part of one label split.

    python -m components.burn_in --index data/index.json --splits data/splits --pretrained models/pretrain \
        --out models/burn_in --metrics metrics/burn_in.json

The split folder is ``<splits>/<ratio_name(pipeline.label_ratio)>`` (:func:`semires.data.splits.ratio_dir`).
Writes the checkpoint folder of :func:`semires.train.supervised.train_supervised` (best.safetensors,
last.pt, metrics.json, overlays); a retried task resumes from last.pt, and a finished folder is never retrained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.pipeline import PipelineConfig

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         splits: Path = _stage.SPLITS,
         out: Path = typer.Option(..., help="checkpoint folder to write"),
         metrics: Path = _stage.METRICS,
         curve: Path = _stage.CURVE,
         pretrained: Path = typer.Option(None, help="pretrain stage folder: its backbone.safetensors starts the "
                                          "backbone (a folder of a disabled pretrain stage holds none)"),
         params: Path = _stage.PARAMS) -> None:
    from semires.data.splits import ratio_dir
    from semires.models.config import ModelConfig
    from semires.train.config import BurnInConfig
    from semires.train.supervised import resolve_labeled, train_supervised

    p = _stage.params(params)
    pipe, model, cfg = (_stage.cfg(p, "pipeline", PipelineConfig), _stage.cfg(p, "model", ModelConfig),
                        _stage.cfg(p, "burn_in", BurnInConfig))
    folder = ratio_dir(splits, pipe.label_ratio)
    if pretrained is not None and (pretrained / "backbone.safetensors").is_file():
        model = model.model_copy(update={"backbone_weights": str(pretrained / "backbone.safetensors")})
    with _stage.stage("burn_in", p, {"pipeline": pipe, "model": model, "burn_in": cfg}, metrics,
                      library_run=True) as st:
        result = train_supervised(index, resolve_labeled(folder), out, model, cfg, st.tracking,
                                  run_name="burn_in")
        best = result.get("best") or {}
        if curve:
            _stage.write_curve(curve, result.get("history") or [])
        st.log_metrics({**{f"val.{k}": v for k, v in best.items()}, "best_epoch": result.get("best_epoch") or 0,
                        "steps": result.get("steps", 0)})
        typer.echo(f"burn-in teacher in {out}: best val mIoU {best.get('mIoU', float('nan')):.2f}, "
                   f"oIoU {best.get('oIoU', float('nan')):.2f} (epoch {result.get('best_epoch')})")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
