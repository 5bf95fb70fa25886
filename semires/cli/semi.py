"""``semires semi``: SemiRES stages -- pseudo-label, refine, and semi-supervised student training.

Wiring (in semires/cli/__init__.py)::

    app.add_typer(semi_cli.app, name="semi")

Typical chain (params.yaml sections pseudo_label, refine, refine_stage, semi, mlflow)::

    semires semi pseudo-label --index data/index.json --split data/splits/10pct --teacher models/burn_in/best.safetensors --out data/pseudo
    semires semi refine --index data/index.json --pseudo data/pseudo --candidates data/candidates --out data/refined
    semires semi train --index data/index.json --split data/splits/10pct --burn-in models/burn_in/best.safetensors \
        --candidates data/candidates --out models/student            # online (the paper)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semires.config import load_params, section
from semires.tracking import TrackingConfig

app = typer.Typer(help="SemiRES: pseudo-labels, SAM-guided refinement, mean-teacher student training.",
                  no_args_is_help=True)


def _refine_cfg(p, strategy: str | None, pwa: bool | None):
    from semires.refine import RefineConfig

    cfg = section(p, "refine", RefineConfig)
    changes = {k: v for k, v in (("strategy", strategy), ("pwa", pwa)) if v is not None}
    return _override(RefineConfig, cfg, changes)


def _override(model, cfg, changes: dict):
    """``cfg`` with command-line ``changes``; a bad value is a one-line error naming the option."""
    from pydantic import ValidationError

    from semires.errors import SemiresError

    if not changes:
        return cfg
    try:
        return model.model_validate({**cfg.model_dump(), **changes})
    except ValidationError as exc:
        bad = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise SemiresError(bad, None, "see `semires semi --help`") from exc


Index = Annotated[Path, typer.Option(help="index JSON written by `semires data index`")]
Split = Annotated[Path, typer.Option(help="label split folder (labeled.txt / unlabeled.txt) of `semires data split`")]
Params = Annotated[Path, typer.Option(help="params.yaml (missing file or sections = documented defaults)")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")]
Candidates = Annotated[Path | None, typer.Option(help="candidate store folder (needed for iom / cpi)")]
Strategy = Annotated[str | None, typer.Option(help="override refine.strategy (a registered strategy: none | iom | "
                                                   "cpi, see semires.refine.strategies)")]
Pwa = Annotated[bool | None, typer.Option("--pwa/--no-pwa", help="override refine.pwa")]


@app.command("pseudo-label")
def pseudo_label(index: Index, split: Split,
                 teacher: Annotated[Path, typer.Option(help="burn-in model file (best.safetensors)")],
                 out: Annotated[Path, typer.Option(help="pseudo-label folder (shards are kept across reruns)")],
                 params: Params = Path("params.yaml"), progress: Progress = True) -> None:
    """Store the teacher's foreground probabilities (uint8 shards) for every unlabeled expression."""
    from semires.data.splits import load_split
    from semires.pseudo.config import PseudoLabelConfig
    from semires.pseudo.label import run_pseudo_label

    p = load_params(params)
    m = run_pseudo_label(index, load_split(split).unlabeled, teacher, out, section(p, "pseudo_label", PseudoLabelConfig),
                         section(p, "mlflow", TrackingConfig), progress=progress)
    typer.echo(f"{m['expressions']} expressions of {m['images']} images in {len(m['shards'])} shards -> {out}")


@app.command("refine")
def refine_cmd(index: Index, pseudo: Annotated[Path, typer.Option(help="pseudo-label folder")],
               out: Annotated[Path, typer.Option(help="refined-label folder")], candidates: Candidates = None,
               strategy: Strategy = None, pwa: Pwa = None, params: Params = Path("params.yaml"),
               progress: Progress = True) -> None:
    """Refine stored pseudo-labels with SAM candidates (IOM / CPI / PWA) and report their quality."""
    from semires.candidates.source import open_candidates
    from semires.pseudo.config import RefineStageConfig
    from semires.pseudo.refine_stage import run_refine
    from semires.refine import needs_candidates

    p = load_params(params)
    cfg = _refine_cfg(p, strategy, pwa)
    rep = run_refine(index, pseudo, open_candidates(candidates, needs_candidates(cfg.strategy)), out, cfg, section(p, "refine_stage", RefineStageConfig),
                     section(p, "mlflow", TrackingConfig), progress=progress)
    typer.echo(f"{cfg.name}: {rep['n']} expressions, match rate {rep['match_rate']:.1f}%, pseudo-label mIoU vs truth "
               f"{_f(rep['before']['mIoU'])} -> {_f(rep['after']['mIoU'])}, oIoU {_f(rep['before']['oIoU'])} -> "
               f"{_f(rep['after']['oIoU'])} (report: {out / 'report.json'})")


@app.command("train")
def train(index: Index, split: Split,
          burn_in: Annotated[Path, typer.Option(help="burn-in model file (best.safetensors): starts both models")],
          out: Annotated[Path, typer.Option(help="run folder (a rerun resumes from its last.pt)")],
          candidates: Candidates = None,
          refined: Annotated[Path | None, typer.Option(help="refined-label folder (self_training mode)")] = None,
          mode: Annotated[str | None, typer.Option(help="override semi.mode: online | self_training")] = None,
          strategy: Strategy = None, pwa: Pwa = None, params: Params = Path("params.yaml"),
          progress: Progress = True) -> None:
    """Mean-teacher training of the student (online refinement, or self-training on stored labels)."""
    from semires.candidates.source import open_candidates
    from semires.data.splits import load_split
    from semires.refine import needs_candidates
    from semires.train.semi import train_semi
    from semires.train.semi_config import SemiConfig

    p = load_params(params)
    cfg = section(p, "semi", SemiConfig)
    cfg = _override(SemiConfig, cfg, {} if mode is None else {"mode": mode})
    refine_cfg = _refine_cfg(p, strategy, pwa)
    sp = load_split(split)
    online = cfg.mode == "online"
    res = train_semi(index, sp.labeled, sp.unlabeled, burn_in, out, cfg, refine_cfg,
                     open_candidates(candidates, online and needs_candidates(refine_cfg.strategy),
                                     cfg.candidate_cache_mb),
                     None if online else refined, section(p, "mlflow", TrackingConfig), progress=progress)
    best = res.get("best") or {}
    typer.echo(f"kept teacher (step {res.get('best_step')}): val mIoU {_f(best.get('mIoU'))}, "
               f"oIoU {_f(best.get('oIoU'))} -> {out / 'best.safetensors'}")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
