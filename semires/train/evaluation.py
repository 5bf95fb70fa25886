"""The evaluation hook of the trainers: score the model on val, keep the best weights by oIoU."""

from __future__ import annotations

from pathlib import Path

import torch

from semires.engine.checkpoint import save_model
from semires.eval.evaluate import evaluate_model
from semires.models import ModelConfig


def keep_best(model: torch.nn.Module, val_ds, *, step: int, state: dict, key: tuple[str, int], out_dir: Path,
              model_cfg: ModelConfig, info: dict, trk, val_split: str, batch_size: int, device, dtype,
              progress: bool, desc: str, save: bool = True) -> dict:
    """Evaluate ``model`` on ``val_ds``; append the scores to ``state["history"]`` and log them as
    ``<val_split>.*`` at ``step``. When oIoU beats ``state["best"]``, the scores become the best and
    ``out_dir/best.safetensors`` is rewritten with the weights and ``info`` (plus step, split, scores;
    only where ``save``: the main process). ``key`` = (state field, value) records where the best was
    found, e.g. ("best_epoch", 3). Returns the scores."""
    m = evaluate_model(model, val_ds, batch_size=batch_size, device=device, dtype=dtype, progress=progress,
                       desc=desc).metrics
    field, at = key
    state["history"].append({field.removeprefix("best_"): at, "step": step, **m} if field != "best_step"
                            else {"step": step, **m})
    trk.log_metrics(m, step=step, prefix=f"{val_split}.")
    if state["best"] is None or m["oIoU"] > state["best"]["oIoU"]:
        state["best"], state[field] = dict(m), at
        if save:
            save_model(out_dir / "best.safetensors", model, model_cfg,
                       {**info, "step": step, "val_split": val_split, "val": m})
    return m
