"""Backbone pretraining: the conv backbone learns to segment every object of a generated pool by
shape category, standing in for LAVT's ImageNet-pretrained Swin (see :mod:`semires.pretrain.config`).

One call of :func:`run_pretrain` is the stage. It writes into ``out_dir``::

    pool/                 the generated RefShapes pool (its own seed; expressions unused)
    last.pt               training state (resumable, weights-only), every checkpoint_every steps
    backbone.safetensors  the backbone's weights + its shape (channels, depths) + the pool's identity
    metrics.json          pretext metric (category mIoU on held-out pool images) per evaluation
    curve.png             loss and metric curves
    _SUCCESS              written last; a finished stage is never redone
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semires import io
from semires.data.synthetic import generate
from semires.engine import ddp
from semires.engine.loop import TRAIN_LOG, StepLoop, elapsed
from semires.engine.optim import build_optimizer, build_scheduler
from semires.engine.runtime import amp_dtype, autocast, configure, seed_everything
from semires.errors import SemiresError
from semires.models import ModelConfig
from semires.models.backbones import BACKBONE_FORMAT, ConvBackbone
from semires.models.category_head import CategoryHead
from semires.models.resize import resize_bilinear
from semires.pretrain.config import PretrainConfig
from semires.pretrain.pool import CategoryPool
from semires.tracking import Tracker, TrackingConfig

WEIGHTS = "backbone.safetensors"
RESUME_FREE = {"threads", "device", "log_every", "checkpoint_every"}


class PretrainNet(nn.Module):
    """Backbone + a category head over all its stages; forward (B, 3, S, S) -> (B, K + 1, S, S) logits."""

    def __init__(self, backbone: ConvBackbone, num_categories: int, head_channels: int):
        super().__init__()
        self.backbone = backbone
        self.head = CategoryHead(backbone.channels, num_categories, head_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.embed(images)
        feats = []
        for i in range(len(self.backbone.channels)):
            x = self.backbone.stage(i, x)
            feats.append(x)
            if i < len(self.backbone.channels) - 1:
                x = self.backbone.down(i, x)
        return resize_bilinear(self.head(feats).float(), images.shape[-2:])


def category_miou(confusion: np.ndarray) -> float:
    """Mean IoU (%) over the object categories (row/column 0, background, left out) of a confusion
    matrix ``confusion[truth, prediction]``; categories absent from truth and prediction are skipped."""
    inter = np.diag(confusion)[1:].astype(np.float64)
    union = confusion.sum(0)[1:] + confusion.sum(1)[1:] - np.diag(confusion)[1:]
    seen = union > 0
    return float(100 * (inter[seen] / union[seen]).mean()) if seen.any() else 0.0


@torch.no_grad()
def evaluate_pool(net: PretrainNet, pool: CategoryPool, rows: Sequence[int], batch_size: int, device,
                  dtype) -> dict[str, float]:
    """Category mIoU (%) and pixel accuracy (%) of ``net`` on ``rows`` of the pool."""
    was = net.training
    net.eval()
    k = pool.num_categories + 1
    conf = np.zeros((k, k), np.int64)
    for i in range(0, len(rows), batch_size):
        images, maps = pool.batch(rows[i:i + batch_size])
        with autocast(device, dtype):
            pred = net(images.to(device)).argmax(1).cpu()
        conf += np.bincount((maps * k + pred).flatten().numpy(), minlength=k * k).reshape(k, k)
    net.train(was)
    return {"category_mIoU": category_miou(conf), "pixel_acc": float(100 * np.trace(conf) / max(1, conf.sum()))}


def _resolved(model_cfg: ModelConfig, cfg: PretrainConfig, pool_meta: dict) -> dict:
    return {"model": {"channels": list(model_cfg.channels), "depths": list(model_cfg.depths)},
            "pretrain": cfg.model_dump(mode="json"), "pool": {"checksum": pool_meta.get("checksum"),
                                                               "generator": pool_meta.get("generator")}}


def _check_same(saved: dict, current: dict, path: Path) -> None:
    diffs = [f"pretrain.{k}" for k in sorted(current["pretrain"]) if k not in RESUME_FREE
             and saved.get("pretrain", {}).get(k) != current["pretrain"][k]]
    diffs += [s for s in ("model", "pool") if saved.get(s) != current[s]]
    if diffs:
        raise SemiresError(f"written with a different config ({', '.join(diffs)})", path,
                           "pretrain into a new --out folder, or delete this one")


def run_pretrain(out_dir: str | Path, model_cfg: ModelConfig, cfg: PretrainConfig | None = None,
                 tracking: TrackingConfig | None = None, *, exclude_seeds: Sequence[int] = (), progress: bool = True,
                 step_hook: Callable[[int], None] | None = None) -> dict:
    """Pretrain ``model_cfg``'s conv backbone; returns metrics.json's dict (see the module docstring).

    Args:
        exclude_seeds: generator seeds of the RES dataset; a pool drawn with one of them would share
            its images, so it is refused.
    """
    cfg = cfg or PretrainConfig()
    out_dir = Path(out_dir)
    if not cfg.enabled:
        raise SemiresError("pretrain.enabled is false", None, "set pretrain.enabled: true to pretrain the backbone")
    if cfg.seed in set(exclude_seeds):
        raise SemiresError(f"pretrain.seed {cfg.seed} is the RES dataset's generator seed: the pool would hold its "
                           "images", None, "choose another pretrain.seed")
    if model_cfg.name != "lavt_tiny":
        raise SemiresError(f"pretraining trains lavt_tiny's conv backbone, not {model_cfg.name}'s", None,
                           "set pretrain.enabled: false (a Swin backbone loads pretrained weights from "
                           "model.vision_path)")
    if io.is_complete(out_dir) and (out_dir / "metrics.json").is_file():
        current = _resolved(model_cfg, cfg, io.read_json(out_dir / "pool" / "refshapes.json"))
        _check_same(io.read_json(out_dir / "config.json"), current, out_dir)
        return io.read_json(out_dir / "metrics.json")
    t_start = time.perf_counter()
    device = ddp.resolve_device(cfg.device)
    configure(device, cfg.deterministic, cfg.threads)
    dtype = amp_dtype(device, cfg.amp)
    pool_dir = generate(out_dir / "pool", preset=cfg.preset, seed=cfg.seed, num_images=cfg.num_images,
                        progress=progress)
    pool = CategoryPool(pool_dir, cfg.image_size)
    if len(pool) <= cfg.val_images:
        raise SemiresError(f"the pool has {len(pool)} images, not more than pretrain.val_images ({cfg.val_images})",
                           None, "raise pretrain.num_images or lower pretrain.val_images")
    resolved = _resolved(model_cfg, cfg, io.read_json(pool_dir / "refshapes.json"))
    seed_everything(cfg.seed)
    net = PretrainNet(ConvBackbone(model_cfg.channels, model_cfg.depths), pool.num_categories,
                      cfg.head_channels).to(device).train()
    optimizer = build_optimizer(net, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.poly_power, cfg.warmup_steps)
    weights = torch.full((pool.num_categories + 1,), 1.0, device=device)
    weights[0] = cfg.background_weight
    val_rows = list(range(len(pool) - cfg.val_images, len(pool)))
    n_train = len(pool) - cfg.val_images
    state: dict = {"history": []}
    loop = StepLoop(out_dir, model=net, optimizer=optimizer, scheduler=scheduler, device=device, config=resolved,
                    check_config=lambda saved, path: _check_same(saved, resolved, path), state=state)

    def batches(step: int, stop: int):
        for at in range(step, stop):  # each step's rows follow from (seed, step): resumable anywhere
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + at)
            yield pool.batch(torch.randint(0, n_train, (cfg.batch_size,), generator=gen).numpy())

    def train_step(batch, step: int) -> dict:
        images, maps = batch
        with autocast(device, dtype):
            logits = net(images.to(device))
        loss = F.cross_entropy(logits.float(), maps.to(device), weight=weights)
        if not math.isfinite(float(loss.detach())):
            raise SemiresError(f"pretraining diverged at step {step + 1} (loss {float(loss)})", loop.resumable,
                               "lower pretrain.lr; the run resumes from last.pt")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return {"loss": float(loss.detach())}

    def evaluate(step: int) -> None:
        m = evaluate_pool(net, pool, val_rows, 64, device, dtype)
        state["history"].append({"step": step, **m})
        trk.log_metrics(m, step, prefix="pool_val.")

    with Tracker(tracking, out_dir).run("pretrain", {"semires.stage": "pretrain"}, run_id=state["run_id"]) as trk:
        state["run_id"] = trk.run_id
        trk.log_params(resolved)
        loop.run(trk, total=cfg.steps, segment_end=lambda step: (step // cfg.eval_every + 1) * cfg.eval_every,
                 batches=batches, train_step=train_step, after_segment=evaluate, log_every=cfg.log_every,
                 checkpoint_every=cfg.checkpoint_every, progress=progress,
                 desc=lambda step, stop: f"pretrain {step}/{cfg.steps}", step_hook=step_hook)
        final = state["history"][-1]
        save_backbone(out_dir / WEIGHTS, net.backbone, resolved, final)
        from semires.viz import save_curves

        save_curves(out_dir / "curve.png", {"train loss": [[r["step"], r["loss"]] for r in state[TRAIN_LOG]]},
                    {"pool val category mIoU": [[h["step"], h["category_mIoU"]] for h in state["history"]]},
                    title=f"backbone pretraining ({len(pool) - cfg.val_images} pool images)")
        result = {"config": resolved, "final": final, "history": state["history"], "steps": cfg.steps,
                  "pool_images": len(pool), "train_s": round(state["train_s"], 2),
                  "wall_s_this_process": elapsed(t_start)}
        loop.finish(trk, result, metrics={f"final.{k}": v for k, v in final.items()},
                    artifacts=(WEIGHTS, "metrics.json", "curve.png"),
                    summary={"steps": cfg.steps, "category_mIoU": final["category_mIoU"]})
    (out_dir / "last.pt").unlink(missing_ok=True)
    return result


def save_backbone(path: Path, backbone: ConvBackbone, resolved: dict, final: dict) -> Path:
    """The backbone's weights as safetensors, with its shape and provenance as metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    meta = {"format": BACKBONE_FORMAT, "channels": json.dumps(list(backbone.channels)),
            "depths": json.dumps(resolved["model"]["depths"]), "provenance": json.dumps(resolved, sort_keys=True),
            "final": json.dumps(final, sort_keys=True)}
    with io.atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path
