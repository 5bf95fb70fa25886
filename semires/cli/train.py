"""``semires train supervised`` and ``semires evaluate``.

Wiring (in semires/cli/__init__.py)::

    app.add_typer(train_cli.app, name="train")
    app.command("evaluate")(train_cli.evaluate)

Multi-GPU: ``torchrun --nproc_per_node N -m semires train supervised ...`` (DDP; rank 0 writes).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from semires.config import load_params, section
from semires.models import ModelConfig
from semires.tracking import Tracker, TrackingConfig
from semires.train.config import BurnInConfig

app = typer.Typer(help="Train RES models.", no_args_is_help=True)

INDEX_HELP = "index JSON written by `semires data index`"
PARAMS_HELP = "params.yaml with the model, burn_in and mlflow sections (missing file or sections = defaults)"


@app.command("supervised")
def supervised(
    index: Path = typer.Option(..., help=INDEX_HELP),
    labeled: str = typer.Option(..., help="split folder (its labeled.txt), a file of image ids, or 'all' for all of train"),
    out: Path = typer.Option(..., help="run folder: checkpoints, metrics, overlays (a rerun resumes here)"),
    params: Path = typer.Option(Path("params.yaml"), help=PARAMS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Supervised burn-in: train the RES model on the labeled train images; best epoch by val oIoU."""
    from semires.train.supervised import resolve_labeled, train_supervised

    p = load_params(params)
    res = train_supervised(index, resolve_labeled(labeled), out, section(p, "model", ModelConfig),
                           section(p, "burn_in", BurnInConfig), section(p, "mlflow", TrackingConfig),
                           progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun every rank returns the same metrics: one summary line is enough
    best = res.get("best") or {}
    typer.echo(f"best epoch {res.get('best_epoch')}: val mIoU {best.get('mIoU', float('nan')):.2f}, "
               f"oIoU {best.get('oIoU', float('nan')):.2f} -> {out / 'best.safetensors'}")


def evaluate(
    index: Path = typer.Option(..., help=INDEX_HELP),
    checkpoint: Path = typer.Option(..., help="model file (best.safetensors) or training checkpoint (last.pt)"),
    out: Path = typer.Option(..., help="folder for results.json, per_expression.json and overlay PNGs"),
    splits: str | None = typer.Option(None, help="comma-separated splits; default: val/test/testA/testB present"),
    batch_size: int = typer.Option(32, min=1),
    image_size: int | None = typer.Option(None, help="input side; default: the size the model was trained at"),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    overlays: int = typer.Option(12, min=0, help="expressions drawn per split"),
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml (its mlflow section is used)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Evaluate a model on every expression of the held-out splits (mIoU, oIoU, prec@X) with overlays."""
    from semires.engine.checkpoint import read_model_file
    from semires.eval.evaluate import evaluate_checkpoint

    read_model_file(checkpoint)  # a missing or refused file fails here, before the tracker writes anything into out
    tracker = Tracker(section(load_params(params), "mlflow", TrackingConfig), out)
    wanted = [s.strip() for s in splits.split(",") if s.strip()] if splits else None
    with tracker.run("evaluate", {"semires.checkpoint": str(checkpoint)}) as trk:
        trk.log_params({"evaluate": {"checkpoint": str(checkpoint), "index": str(index), "splits": wanted or "default",
                                     "image_size": image_size or "model", "batch_size": batch_size}})
        res = evaluate_checkpoint(index, checkpoint, out, splits=wanted, batch_size=batch_size, image_size=image_size,
                                  device=device, overlays=overlays, tracker=trk, progress=progress)
    for split, m in res["splits"].items():
        typer.echo(f"{split:>6}: n={m['n']} mIoU {m['mIoU']:.2f} oIoU {m['oIoU']:.2f} prec@0.5 {m['prec@0.5']:.2f}")
