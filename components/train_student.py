"""Stage ``train_student``: semi-supervised training of the student from the burn-in teacher.

    python -m components.train_student --index data/index.json --splits data/splits \
        --teacher models/burn_in --candidates data/candidates --refined data/refined \
        --out models/student --metrics metrics/train_student.json --curve plots/train_student.json

``semi.mode: online`` (the paper) refines the EMA teacher's pseudo-masks with the candidates every
step; ``self_training`` learns the labels of the ``refine`` stage. A retried task resumes from
last.pt; a finished folder is never retrained.
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
         teacher: Path = typer.Option(..., help="burn-in folder (its best.safetensors starts student and teacher)"),
         candidates: Path = typer.Option(None, help="candidate store folder (online mode with iom / cpi)"),
         refined: Path = typer.Option(None, help="refined-label folder (self_training mode)"),
         out: Path = typer.Option(..., help="student folder to write"),
         metrics: Path = _stage.METRICS,
         curve: Path = _stage.CURVE,
         params: Path = _stage.PARAMS) -> None:
    from semires.candidates.source import open_candidates
    from semires.data.splits import load_split, ratio_dir
    from semires.refine import RefineConfig, needs_candidates
    from semires.train.semi import train_semi
    from semires.train.semi_config import SemiConfig

    p = _stage.params(params)
    pipe, cfg, refine_cfg = (_stage.cfg(p, "pipeline", PipelineConfig), _stage.cfg(p, "semi", SemiConfig),
                             _stage.cfg(p, "refine", RefineConfig))
    split = load_split(ratio_dir(splits, pipe.label_ratio))
    online = cfg.mode == "online"
    source = open_candidates(candidates, online and needs_candidates(refine_cfg.strategy), cfg.candidate_cache_mb)
    with _stage.stage("train_student", p, {"pipeline": pipe, "semi": cfg, "refine": refine_cfg}, metrics,
                      library_run=True) as st:
        result = train_semi(index, split.labeled, split.unlabeled, teacher / "best.safetensors", out, cfg, refine_cfg,
                            candidates=source, refined_dir=None if online else refined, tracking=st.tracking,
                            run_name="train_student")
        best = result.get("best") or {}
        if curve:
            _stage.write_curve(curve, result.get("history") or [])
        st.log_metrics({**{f"val.{k}": v for k, v in best.items()}, "steps": result.get("steps", 0)}, to_run=False)
        typer.echo(f"student in {out}: kept teacher val mIoU {best.get('mIoU', float('nan')):.2f}, "
                   f"oIoU {best.get('oIoU', float('nan')):.2f}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
