"""Supervised (burn-in) training of the RES model on the labeled split only.

One call of :func:`train_supervised` is the stage. It writes into ``out_dir``::

    config.json         resolved config (model, burn_in, data)
    last.pt             full training state, rewritten atomically every ``checkpoint_every`` steps
                        and at every epoch end; a rerun resumes from it (bit-exactly on CPU)
    best.safetensors    weights of the best epoch by val oIoU, with config and metrics
    overlays_val.png    val predictions of the best epoch
    metrics.json        best / last val metrics, per-epoch history, timings
    _SUCCESS            written last; a finished stage is never redone

A NaN or infinite loss raises :class:`semires.errors.TrainingDiverged`; nothing is written after
it, so ``last.pt`` stays the last good state. Under ``torchrun`` every process trains on its share
of each batch (DDP) and rank 0 alone writes files and logs to MLflow.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from semires import io
from semires.data.index import RefIndex
from semires.data.splits import read_ids
from semires.engine import ddp
from semires.engine.checkpoint import load_model_file
from semires.engine.dataset import ExpressionDataset, batch_loader, warm_text_cache
from semires.engine.loop import StepLoop, elapsed
from semires.engine.optim import build_optimizer, build_scheduler
from semires.engine.runtime import amp_dtype, autocast, configure, frozen_heap, memory_format, seed_everything
from semires.engine.sampler import StreamBatchSampler, steps_per_epoch
from semires.errors import DataError, SemiresError
from semires.eval.evaluate import draw_predictions
from semires.models import ModelConfig, build_model, load_tokenizer
from semires.models.category_head import category_lookup
from semires.tracking import Tracker, TrackingConfig
from semires.train.config import BurnInConfig
from semires.train.evaluation import keep_best
from semires.train.losses import category_loss, check_finite, supervised_loss

# burn_in fields that may change between a run and its resume without changing the result
RESUME_FREE = {"num_workers", "threads", "log_every", "eval_batch_size", "device", "checkpoint_every",
               "cache_images", "overlays"}
StepHook = Callable[[int], None]


def resolve_labeled(spec: str | Path) -> list[int] | None:
    """Labeled image ids from a split folder (its labeled.txt), an id-list file, or ``all`` (None)."""
    if str(spec) == "all":
        return None
    p = Path(spec)
    return read_ids(p / "labeled.txt" if p.is_dir() else p)


def _category_classes(index: RefIndex, model_cfg: ModelConfig, cfg: BurnInConfig) -> dict[int, int] | None:
    """Category id -> head class for the auxiliary loss, or None when it is off."""
    if not cfg.category_weight:
        if model_cfg.categories:
            # an untrained head is dead weight in the checkpoint, and DDP refuses parameters without gradients
            raise SemiresError(f"model.categories is {model_cfg.categories} but burn_in.category_weight is 0",
                               index.path, "set burn_in.category_weight > 0, or model.categories: 0")
        return None
    if model_cfg.categories < len(index.cats):
        raise SemiresError(f"burn_in.category_weight needs a category head for the index's {len(index.cats)} "
                           f"categories, but model.categories is {model_cfg.categories}", index.path,
                           f"set model.categories: {len(index.cats)} (or burn_in.category_weight: 0)")
    return category_lookup(index.cats)


def _resolved_config(model_cfg: ModelConfig, cfg: BurnInConfig, index: RefIndex, labeled: list[int] | None,
                     n_train: int) -> dict:
    ids = "all" if labeled is None else ",".join(str(i) for i in sorted(set(labeled)))
    return {"model": model_cfg.model_dump(mode="json"), "burn_in": cfg.model_dump(mode="json"),
            "data": {"index": str(index.path), "labeled_images": "all" if labeled is None else len(set(labeled)),
                     "labeled_sha256": hashlib.sha256(ids.encode()).hexdigest(), "train_expressions": n_train}}


def _check_resume_config(saved: dict, current: dict, path: Path) -> None:
    diffs = []
    for section in ("model", "burn_in"):
        a, b = saved.get(section, {}), current[section]
        diffs += [f"{section}.{k}" for k in sorted(set(a) | set(b))
                  if k not in RESUME_FREE and a.get(k) != b.get(k)]
    if saved.get("data", {}).get("labeled_sha256") != current["data"]["labeled_sha256"]:
        diffs.append("data.labeled (a different labeled set)")
    if diffs:
        raise SemiresError(f"last.pt was written with a different config ({', '.join(diffs)})", path,
                           "train into a new --out folder, or delete last.pt to start over")


def train_supervised(index: RefIndex | str | Path, labeled: Sequence[int] | None, out_dir: str | Path,
                     model_cfg: ModelConfig | None = None, cfg: BurnInConfig | None = None,
                     tracking: TrackingConfig | None = None, *, step_hook: StepHook | None = None,
                     progress: bool = True, run_name: str = "burn_in") -> dict:
    """Train on the labeled train images (``labeled`` ids; None = all of train); returns metrics.json's dict.

    ``step_hook(step)`` is called after every optimizer step once that step's checkpoint (if any)
    is written (tests use it to simulate a kill).
    """
    model_cfg, cfg = model_cfg or ModelConfig(), cfg or BurnInConfig()
    out_dir = Path(out_dir)
    if io.is_complete(out_dir) and (out_dir / "metrics.json").is_file():
        return io.read_json(out_dir / "metrics.json")
    t_start = time.perf_counter()
    info = ddp.init_distributed(cfg.device)
    device = info.device
    configure(device, cfg.deterministic, cfg.threads)
    dtype = amp_dtype(device, cfg.amp)
    index = index if isinstance(index, RefIndex) else RefIndex.load(index)
    labeled = None if labeled is None else [int(i) for i in labeled]

    seed_everything(cfg.seed)  # same initial weights on every process
    tokenizer = load_tokenizer(model_cfg.text_encoder)
    train_ds = ExpressionDataset.from_split(index, tokenizer, cfg.image_size, model_cfg.max_tokens, split="train",
                                            image_ids=labeled, cache_images=cfg.cache_images,
                                            categories=_category_classes(index, model_cfg, cfg))
    early_ds = train_ds.resized(cfg.early_image_size) if cfg.early_image_size and cfg.early_epochs else train_ds
    if len(train_ds) == 0:
        raise DataError("no train expressions on the labeled images", index.path,
                        "check that --labeled lists train image ids of this index")
    val_ds = ExpressionDataset.from_split(index, tokenizer, cfg.image_size, model_cfg.max_tokens,
                                          split=cfg.val_split, cache_images=cfg.cache_images
                                          ).subset(cfg.val_max_expressions)
    if len(val_ds) == 0:
        raise DataError(f"no expressions in split '{cfg.val_split}'", index.path, "set burn_in.val_split")
    layout = memory_format(cfg.channels_last)
    model = build_model(model_cfg).to(device, memory_format=layout)
    warm_text_cache(model, train_ds, val_ds, dtype=dtype)
    net = ddp.wrap(model, info)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)
    spe = steps_per_epoch(len(train_ds), cfg.batch_size, info.world_size, cfg.steps_per_epoch)
    total = spe * cfg.epochs
    scheduler = build_scheduler(optimizer, total, cfg.poly_power, cfg.warmup_steps)
    resolved = _resolved_config(model_cfg, cfg, index, labeled, len(train_ds))

    state = {"best": None, "best_epoch": None, "history": [], "images": 0}
    loop = StepLoop(out_dir, model=model, optimizer=optimizer, scheduler=scheduler, device=device, config=resolved,
                    check_config=lambda saved, path: _check_resume_config(saved, resolved, path), state=state,
                    is_main=info.is_main, epoch_of=lambda step: step // spe,
                    # a fresh run: dropout differs per process, as DDP expects (a resumed one restores the RNG)
                    on_fresh_start=lambda: seed_everything(cfg.seed + info.rank))
    aux = train_ds.categories is not None  # the category loss is on (checked by _category_classes)

    def batches(step: int, stop: int):
        net.train()
        sampler = StreamBatchSampler(len(train_ds), cfg.batch_size, cfg.seed, step, stop, info.rank, info.world_size)
        return batch_loader(early_ds if step // spe < cfg.early_epochs else train_ds, sampler,
                            num_workers=cfg.num_workers, pin_memory=device.type == "cuda")

    def train_step(batch: dict, step: int) -> dict:
        with autocast(device, dtype):
            out = net(batch["image"].to(device, non_blocking=True, memory_format=layout), batch["input_ids"].to(device),
                      batch["attention_mask"].to(device), return_categories=aux)
        logits, cat_logits = out if aux else (out, None)
        loss = supervised_loss(logits, batch["mask"].to(device), cfg.class_weights, cfg.dice_weight)
        if aux:
            loss = loss + cfg.category_weight * category_loss(cat_logits, batch["categories"].to(device))
        mean_loss = ddp.all_reduce_sum(loss.detach().clone()) / info.world_size
        check_finite(mean_loss, step + 1, loop.resumable)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        state["images"] += cfg.batch_size * info.world_size
        return {"loss": mean_loss}

    def after_epoch(step: int) -> None:
        epoch = step // spe
        if epoch % cfg.eval_every == 0 or step >= total:
            keep_best(model, val_ds, step=step, state=state, key=("best_epoch", epoch), out_dir=out_dir,
                      model_cfg=model_cfg, info={"image_size": cfg.image_size, "epoch": epoch, "lr": cfg.lr},
                      trk=trk, val_split=cfg.val_split, batch_size=cfg.eval_batch_size, device=device, dtype=dtype,
                      progress=progress and info.is_main, desc=f"val epoch {epoch}", save=info.is_main)

    tracker = Tracker(tracking, out_dir, active=info.is_main)
    tags = {"semires.model": model_cfg.name, "semires.labeled_images": str(resolved["data"]["labeled_images"])}
    with frozen_heap(), tracker.run(run_name, tags, run_id=state["run_id"]) as trk:
        state["run_id"] = trk.run_id
        trk.log_params(resolved)
        trk.log_artifact(out_dir / "config.json")
        loop.run(trk, total=total, segment_end=lambda step: (step // spe + 1) * spe, batches=batches,
                 train_step=train_step, after_segment=after_epoch, log_every=cfg.log_every,
                 checkpoint_every=cfg.checkpoint_every, progress=progress,
                 desc=lambda step, stop: f"epoch {step // spe + 1}/{cfg.epochs}", step_hook=step_hook)
        result = {"best_epoch": state["best_epoch"], "best": state["best"],
                  "last": state["history"][-1] if state["history"] else None, "history": state["history"],
                  "steps": total, "steps_per_epoch": spe, "epochs": cfg.epochs, "train_expressions": len(train_ds),
                  "val_expressions": len(val_ds), "train_s": round(state["train_s"], 2),
                  "train_images_per_s": round(state["images"] / max(state["train_s"], 1e-9), 2),
                  "wall_s_this_process": elapsed(t_start)}
        ddp.barrier()  # the main process has written best.safetensors
        best_file = out_dir / "best.safetensors"
        if best_file.is_file():  # every process ends with the best weights in ``model``
            load_model_file(model, best_file)
            if info.is_main:
                m = state["best"]
                draw_predictions(model, val_ds, cfg.overlays, out_dir / f"overlays_{cfg.val_split}.png",
                                 f"{cfg.val_split} epoch {state['best_epoch']}: mIoU {m['mIoU']:.1f}, "
                                 f"oIoU {m['oIoU']:.1f}", batch_size=cfg.eval_batch_size, device=device, dtype=dtype)
        loop.finish(trk, result, metrics={**{f"best.{k}": v for k, v in (state["best"] or {}).items()},
                                          "train_images_per_s": result["train_images_per_s"]},
                    artifacts=("metrics.json", f"overlays_{cfg.val_split}.png", "best.safetensors"),
                    summary={"steps": total, "best_val_oIoU": (state["best"] or {}).get("oIoU")})
        if info.is_main and trk.enabled and trk.cfg.log_model and best_file.is_file():
            trk.log_model(model.cpu(), val_ds.example_inputs(2))
    return result
