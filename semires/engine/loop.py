"""The resumable step loop that every trainer runs (burn-in, semi-supervised student, pretraining).

A trainer builds its model, data and optimizer, then hands :class:`StepLoop` what differs:

- ``segment_end(step)``: where the stretch of steps that starts at ``step`` ends (an epoch, or
  the next evaluation);
- ``batches(step, stop)``: the batches of steps ``step .. stop - 1``, in order;
- ``train_step(batch, step)``: one optimizer step; returns the numbers to log (floats or 0-d
  tensors, averaged over ``log_every`` steps);
- ``after_segment(step)``: the evaluation hook, run at the end of every stretch.

The loop owns what is the same everywhere: resuming from ``out_dir/last.pt`` (model, optimizer,
scheduler, RNG and the trainer's ``state`` dict), the progress bar, the logged training curve
(``state["train_log"]`` and MLflow ``train.*``), ``last.pt`` every ``checkpoint_every`` steps and
at the end of every stretch (written atomically, main process only), the step hook that tests use
to simulate a kill, and the training time (``state["train_s"]``, checkpoint writes excluded).
``finish`` writes the result, logs it and marks the folder complete.

::

    loop = StepLoop(out_dir, model=..., optimizer=..., scheduler=..., device=..., config=resolved,
                    check_config=..., state=state)
    with tracker.run(...) as trk:
        loop.run(trk, total=..., segment_end=..., batches=..., train_step=..., after_segment=...)
        loop.finish(trk, result, artifacts=("metrics.json", "best.safetensors"))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from semires import io
from semires.engine import ddp
from semires.engine.checkpoint import resume_training, save_checkpoint

TRAIN_LOG = "train_log"


def _mean(values: list) -> float:
    return sum(float(v) for v in values) / len(values)


class StepLoop:
    """One resumable run of optimizer steps into ``out_dir``.

    Args:
        model, optimizer, scheduler: what ``last.pt`` saves and restores (``model`` may be a module
            holding several networks, e.g. a student and its EMA teacher).
        config: the resolved configuration, written to ``out_dir/config.json`` and into ``last.pt``.
        check_config: ``check_config(saved_config, path)`` refuses (raises) a ``last.pt`` written
            with another configuration.
        state: the trainer's plain state (best score, history, MLflow run id ...); saved in
            ``last.pt`` and restored from it in place.
        is_main: only the main process writes files (DDP).
        epoch_of: the epoch recorded in ``last.pt`` for a step (0 for step-counted trainers).
        on_fresh_start: called when there is no ``last.pt`` to resume (e.g. to seed the RNGs of a
            process); a resumed run restores them instead.
    """

    def __init__(self, out_dir: str | Path, *, model: nn.Module, optimizer, scheduler, device: str | torch.device,
                 config: dict, check_config: Callable[[dict, Path], None] | None, state: dict, is_main: bool = True,
                 epoch_of: Callable[[int], int] = lambda step: 0, on_fresh_start: Callable[[], None] | None = None):
        self.out_dir, self.last = Path(out_dir), Path(out_dir) / "last.pt"
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.config, self.state, self.is_main, self.epoch_of = config, state, is_main, epoch_of
        state.setdefault("train_s", 0.0)
        state.setdefault("run_id", None)
        self.step = 0
        if self.last.is_file():
            self.step, extra = resume_training(self.last, model=model, optimizer=optimizer, scheduler=scheduler,
                                               device=device, check_config=check_config)
            state.update(extra)
        elif on_fresh_start is not None:
            on_fresh_start()
        if is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            io.write_json(self.out_dir / "config.json", config)

    @property
    def resumable(self) -> Path | None:
        """``last.pt`` when there is one (where a diverged run can resume from), else None."""
        return self.last if self.last.is_file() else None

    def checkpoint(self) -> None:
        """Write ``last.pt`` with the current step, model, optimizer, scheduler, RNG and state."""
        if self.is_main:
            save_checkpoint(self.last, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            step=self.step, epoch=self.epoch_of(self.step), config=self.config, extra=self.state)

    def run(self, trk, *, total: int, segment_end: Callable[[int], int],
            batches: Callable[[int, int], Iterable[Any]], train_step: Callable[[Any, int], dict],
            after_segment: Callable[[int], None], log_every: int, checkpoint_every: int | None,
            desc: Callable[[int, int], str], progress: bool = True,
            step_hook: Callable[[int], None] | None = None) -> int:
        """Train from the current step to ``total`` (see the module docstring); returns ``total``."""
        window: dict[str, list] = {}
        while self.step < total:
            stop = min(total, segment_end(self.step))
            t0 = time.perf_counter()
            bar = tqdm(batches(self.step, stop), total=stop - self.step, desc=desc(self.step, stop),
                       disable=not (progress and self.is_main), unit="step", leave=False)
            for batch in bar:
                parts = train_step(batch, self.step)
                self.step += 1
                for k, v in parts.items():
                    window.setdefault(k, []).append(v)
                if self.step % log_every == 0 or self.step == stop:
                    means = {k: _mean(v) for k, v in window.items()}
                    window.clear()
                    if "loss" in means:
                        bar.set_postfix(loss=f"{means['loss']:.4f}")
                    trk.log_metrics({f"train.{k}": v for k, v in means.items()}
                                    | {"train.lr": self.scheduler.get_last_lr()[0]}, step=self.step)
                    self.state.setdefault(TRAIN_LOG, []).append(
                        {"step": self.step, **{k: round(v, 5) for k, v in means.items()}})
                if checkpoint_every and self.step % checkpoint_every == 0 and self.step < stop:
                    self.state["train_s"] += time.perf_counter() - t0
                    self.checkpoint()
                    t0 = time.perf_counter()
                if step_hook is not None:
                    step_hook(self.step)
            self.state["train_s"] += time.perf_counter() - t0
            after_segment(self.step)
            self.checkpoint()
        return self.step

    def finish(self, trk, result: dict, *, metrics: dict | None = None, artifacts: Sequence[str] = (),
               summary: dict | None = None) -> dict:
        """Write ``metrics.json`` (``result``), log ``metrics`` and the ``artifacts`` (file names in
        ``out_dir`` that exist) to the run, then mark ``out_dir`` complete with ``summary`` (main
        process only; the other processes wait for it). Returns ``result``."""
        if self.is_main:
            io.write_json(self.out_dir / "metrics.json", result)
            if metrics:
                trk.log_metrics(metrics)
            for name in artifacts:
                trk.log_artifact(self.out_dir / name)
        ddp.barrier()
        if self.is_main:
            io.mark_complete(self.out_dir, summary or {})
        return result


def elapsed(t_start: float) -> float:
    """Seconds since ``t_start`` (``time.perf_counter``), rounded for metrics.json."""
    return round(time.perf_counter() - t_start, 2)
