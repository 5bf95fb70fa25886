"""Stage ``refine``: SAM-guided refinement (IOM / CPI / PWA) of the stored pseudo-labels, then its gate.

    python -m components.refine --index data/index.json --pseudo data/pseudo \
        --candidates data/candidates --out data/refined --report reports/checks/refine.txt \
        --metrics metrics/refine.json

Writes refined labels, the quality report (pseudo-label mIoU before / after, match rate) and
overlays. ``--candidates`` is needed unless ``refine.strategy`` reads none (``none``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from components import _stage
from semires.checks import ChecksConfig, check_refined

APP = _stage.app(__doc__)


@APP.command()
def main(index: Path = _stage.INDEX,
         pseudo: Path = typer.Option(..., help="pseudo-label folder"),
         candidates: Path = _stage.CANDIDATES,
         out: Path = typer.Option(..., help="refined-label folder to write"),
         report: Path = _stage.REPORT,
         metrics: Path = _stage.METRICS,
         params: Path = _stage.PARAMS) -> None:
    from semires.candidates.source import open_candidates
    from semires.pseudo.config import RefineStageConfig
    from semires.pseudo.refine_stage import run_refine
    from semires.refine import RefineConfig, needs_candidates

    p = _stage.params(params)
    cfg, stage_cfg = _stage.cfg(p, "refine", RefineConfig), _stage.cfg(p, "refine_stage", RefineStageConfig)
    checks = _stage.cfg(p, "checks", ChecksConfig).labels
    source = open_candidates(candidates, needs_candidates(cfg.strategy))
    with _stage.stage("refine", p, {"refine": cfg, "refine_stage": stage_cfg, "checks.labels": checks}, metrics,
                      library_run=True) as st:
        rep = run_refine(index, pseudo, source, out, cfg, stage_cfg, st.tracking)
        result = check_refined(out, pseudo, report_path=report, cfg=checks)
        st.log_artifact(report, "checks")
        st.log_metrics({"match_rate": rep["match_rate"], "delta_mIoU": rep["delta_mIoU"],
                        "delta_oIoU": rep["delta_oIoU"], "improved": rep["improved"], "worsened": rep["worsened"],
                        **{f"pseudo.{w}.{k}": rep[w][k] for w in ("before", "after") for k in ("mIoU", "oIoU")}},
                       to_run=False)
        typer.echo(f"refined ({cfg.name}) in {out}: match rate {rep['match_rate']:.1f}%, pseudo-label mIoU "
                   f"{rep['before']['mIoU']:.2f} -> {rep['after']['mIoU']:.2f}; {result}")


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
