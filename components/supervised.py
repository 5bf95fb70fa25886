"""Stage ``supervised``: the step-matched supervised-only baseline.

    python -m components.supervised --index data/index.json --splits data/splits --pretrained models/pretrain \
        --out models/supervised --metrics metrics/supervised.json

The burn-in's settings on the same labeled images, trained for as many optimizer steps as burn-in and
student together (``supervised.steps``; None = burn-in steps + ``semi.steps``), so that the report
can set the student beside a supervised run that trained as long. With ``supervised.enabled: false``
the folder holds only ``disabled.json`` and the report leaves the column out. A retried task resumes
from last.pt; a finished folder is never retrained.
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
    from semires import io
    from semires.errors import SemiresError
    from semires.train.config import BurnInConfig, SupervisedConfig, burn_in_steps, step_matched
    from semires.train.semi_config import SemiConfig

    p = _stage.params(params)
    cfg, burn = _stage.cfg(p, "supervised", SupervisedConfig), _stage.cfg(p, "burn_in", BurnInConfig)
    if not cfg.enabled:
        with _stage.stage("supervised", p, {"supervised": cfg}, metrics) as st:
            io.write_json(out / "disabled.json", {"enabled": False})
            st.log_metrics({"enabled": 0})
        typer.echo("step-matched supervised baseline disabled (supervised.enabled: false)")
        return
    try:
        semi = _stage.cfg(p, "semi", SemiConfig)
        if cfg.steps is None and semi.epochs is not None:
            raise ValueError("semi.epochs sets the student's steps from the data, so the baseline cannot match them")
        steps = cfg.steps or burn_in_steps(burn) + semi.steps
        matched = step_matched(burn, steps)
    except ValueError as e:
        raise SemiresError(str(e), params, "set supervised.steps and burn_in.steps_per_epoch") from None
    _stage.train_labeled("supervised", p, index, splits, out, matched, metrics, curve, pretrained,
                         {"supervised": cfg})


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
