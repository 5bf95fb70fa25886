"""Stage ``pretrain``: the vision backbone, pretrained on a generated RefShapes pool of its own.

    python -m components.pretrain --out models/pretrain --metrics metrics/pretrain.json

It stands in for LAVT's ImageNet weights: the pool is drawn with ``pretrain.seed`` (refused when it
is the RES dataset's ``data.synth.seed``) and only its object annotations are used. Writes the folder
of :func:`semires.pretrain.train.run_pretrain` (backbone.safetensors, metrics.json, curve.png); burn-in
starts from ``models/pretrain/backbone.safetensors`` when ``model.backbone_weights`` names it. With
``pretrain.enabled: false`` (a Swin backbone, already pretrained) the folder holds only a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage

APP = _stage.app(__doc__)


@APP.command()
def main(out: Path = typer.Option(..., help="folder to write the pretrained backbone into"),
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires import io
    from semires.config import DataConfig
    from semires.models.config import ModelConfig
    from semires.pretrain.config import PretrainConfig
    from semires.pretrain.train import run_pretrain

    p = _stage.params(params)
    data, model, cfg = (_stage.cfg(p, "data", DataConfig), _stage.cfg(p, "model", ModelConfig),
                        _stage.cfg(p, "pretrain", PretrainConfig))
    with _stage.stage("pretrain", p, {"model": model, "pretrain": cfg}, metrics, library_run=True) as st:
        if not cfg.enabled:
            io.write_json(out / "disabled.json", {"enabled": False})
            st.log_metrics({"enabled": 0})
            typer.echo("pretraining disabled (pretrain.enabled: false)")
            return
        result = run_pretrain(out, model, cfg, st.tracking, exclude_seeds=[data.synth.seed])
        st.log_metrics({"pool_val.category_mIoU": result["final"]["category_mIoU"],
                        "pool_val.pixel_acc": result["final"]["pixel_acc"], "steps": result["steps"],
                        "pool_images": result["pool_images"]}, to_run=False)
        typer.echo(f"pretrained backbone in {out}: pool val category mIoU {result['final']['category_mIoU']:.1f}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
