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

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         splits: Path = _stage.SPLITS,
         out: Path = typer.Option(..., help="checkpoint folder to write"),
         metrics: Path = _stage.METRICS,
         curve: Path = _stage.CURVE,
         pretrained: Path = _stage.PRETRAINED,
         params: Path = _stage.PARAMS) -> None:
    from semires.train.config import BurnInConfig

    p = _stage.params(params)
    _stage.train_labeled("burn_in", p, index, splits, out, _stage.cfg(p, "burn_in", BurnInConfig), metrics, curve,
                         pretrained)


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
