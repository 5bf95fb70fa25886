"""Evaluate a RES model: every expression of every ref of a split, at the images' own resolution.

Logits predicted at the training ``image_size`` are upsampled (bilinear) to each image's original
(H, W) before the argmax and compared with the original mask, as LAVT evaluates. Under DDP every
process takes a strided share of the expressions and the per-expression counts are summed.

:func:`evaluate_checkpoint` is the stage: it writes ``results.json`` (atomically),
``per_expression.json`` (IoU per ref/sentence) and one overlay grid per split, then marks the
folder complete; a rerun on the same checkpoint returns the stored results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler
from tqdm import tqdm

from semires import io
from semires.data.index import RefIndex
from semires.engine import ddp
from semires.engine.dataset import ExpressionDataset, batch_loader
from semires.engine.runtime import amp_dtype, autocast
from semires.engine.transforms import logits_to_masks
from semires.errors import DataError
from semires.eval.metrics import iou_from_counts, res_metrics_from_counts
from semires.eval.overlays import PredictionSample, pick_indices, save_overlays

EVAL_SPLITS = ("val", "test", "testA", "testB", "testC")


@dataclass
class EvalResult:
    """Metrics (percent, see :mod:`semires.eval.metrics`), per-expression counts and drawn samples."""

    metrics: dict[str, float]
    inter: np.ndarray
    union: np.ndarray
    samples: list[PredictionSample] = field(default_factory=list)

    @property
    def ious(self) -> np.ndarray:
        return iou_from_counts(self.inter, self.union)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, dataset: ExpressionDataset, *, batch_size: int = 32,
                   device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                   sample_indices: Sequence[int] = (), num_workers: int = 0, progress: bool = True,
                   desc: str = "eval", distributed: bool = True) -> EvalResult:
    """Predict every expression of ``dataset`` and score it against the original-resolution mask.

    Args:
        model: forward(images, input_ids, attention_mask) -> (B, 2, S, S) logits.
        dataset: the expressions to score (its ``index`` gives the original masks).
        dtype: autocast dtype (e.g. torch.bfloat16) or None for full precision.
        sample_indices: dataset indices whose image, prediction and truth are returned for overlays.
        distributed: under DDP, share the expressions between the processes (every process must
            call); False = this process predicts them all alone.
    Returns:
        :class:`EvalResult` with identical metrics on every DDP process.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    rank, world = _rank_world() if distributed else (0, 1)
    n = len(dataset)
    mine = list(range(rank, n, world))
    loader = batch_loader(dataset, BatchSampler(mine, batch_size, drop_last=False), num_workers=num_workers)
    inter = torch.zeros(n, dtype=torch.int64)
    union = torch.zeros(n, dtype=torch.int64)
    want = {int(i) for i in sample_indices}
    samples: list[PredictionSample] = []
    index = dataset.index
    for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False):
        with autocast(device, dtype):
            logits = model(batch["image"].to(device), batch["input_ids"].to(device),
                           batch["attention_mask"].to(device))
        rows = batch["index"].tolist()
        sizes = [(int(index.images[dataset.expressions[k].image_id]["height"]),
                  int(index.images[dataset.expressions[k].image_id]["width"])) for k in rows]
        preds: dict[int, torch.Tensor] = {}
        for hw in dict.fromkeys(sizes):  # one upsampling per image size in the batch
            js = [j for j, s in enumerate(sizes) if s == hw]
            for j, m in zip(js, logits_to_masks(logits[js], hw).cpu()):
                preds[j] = m
        for j, k in enumerate(rows):
            e = dataset.expressions[k]
            pred = preds[j]
            truth = torch.from_numpy(index.ann_mask(e.ann_id))
            inter[k] = int((pred & truth).sum())
            union[k] = int((pred | truth).sum())
            if k in want:
                samples.append(PredictionSample(index.load_image(e.image_id), pred.numpy(), truth.numpy(), e.sent,
                                                float(iou_from_counts(inter[k:k + 1], union[k:k + 1])[0]),
                                                e.ref_id, e.sent_id))
    if world > 1:
        ddp.all_reduce_sum(inter)
        ddp.all_reduce_sum(union)
    model.train(was_training)
    i_np, u_np = inter.numpy(), union.numpy()
    return EvalResult(res_metrics_from_counts(i_np, u_np), i_np, u_np, samples)


def draw_predictions(model: torch.nn.Module, dataset: ExpressionDataset, n: int, path: str | Path,
                     title: str | None = None, *, batch_size: int = 32, device: torch.device | str = "cpu",
                     dtype: torch.dtype | None = None) -> Path | None:
    """Predict ``n`` evenly spaced expressions of ``dataset`` (:func:`pick_indices`) and save them as
    an overlay grid at ``path``; None when there is nothing to draw. Runs in this process alone.

    Training stages call it once, for the best weights, when they finish: drawing the grid at every
    new best cost about 3 s each time (matplotlib), 20 s of a 10-minute CPU run.
    """
    idx = pick_indices(len(dataset), n)
    if not idx:
        return None
    res = evaluate_model(model, dataset.select(idx), batch_size=batch_size, device=device, dtype=dtype,
                         sample_indices=range(len(idx)), progress=False, distributed=False)
    return save_overlays(res.samples, path, title=title)


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def eval_splits(index: RefIndex, requested: Sequence[str] | None = None) -> list[str]:
    """The splits to evaluate: ``requested`` (each must exist), else every held-out split present."""
    present = index.splits()
    if requested:
        missing = [s for s in requested if s not in present]
        if missing:
            raise DataError(f"split(s) {missing} not in the index (it has {present})", index.path,
                            "pass --splits with splits the dataset has")
        return list(requested)
    return [s for s in EVAL_SPLITS if s in present]


def evaluate_checkpoint(index_path: str | Path, checkpoint: str | Path, out_dir: str | Path, *,
                        splits: Sequence[str] | None = None, batch_size: int = 32, image_size: int | None = None,
                        device: str = "auto", amp: str = "auto", overlays: int = 12, num_workers: int = 0,
                        tracker=None, progress: bool = True, text_pool: dict | None = None) -> dict:
    """Evaluate a model file on ``splits`` (default: val/test/testA/testB present) and write the results.

    Writes ``<out>/results.json``: {"checkpoint", "checkpoint_sha256", "index", "image_size",
    "model", "splits": {split: {"n", "mIoU", "oIoU", "prec@0.5", ...}}}, ``per_expression.json``
    and ``overlays_<split>.png``. ``image_size`` defaults to the one the model was trained at.
    ``text_pool``: a dict the caller keeps across calls; models with the same frozen text encoder
    then share one sentence-feature cache (:func:`semires.models.share_text_cache`).
    """
    from semires.engine.checkpoint import load_model
    from semires.models import load_tokenizer, share_text_cache

    out_dir, checkpoint = Path(out_dir), Path(checkpoint)
    digest = io.sha256_file(checkpoint) if checkpoint.is_file() else None
    if io.is_complete(out_dir) and (out_dir / "results.json").is_file():
        done = io.read_json(out_dir / "results.json")
        if done.get("checkpoint_sha256") == digest:
            return done
    dev = ddp.resolve_device(device)
    model, cfg, info = load_model(checkpoint, dev)
    size = int(image_size or info.get("image_size") or 480)
    index = RefIndex.load(index_path)
    tokenizer = load_tokenizer(cfg.text_encoder)
    dtype = amp_dtype(dev, amp)
    if text_pool is not None:
        share_text_cache(model, text_pool, dtype)
    results = {"checkpoint": str(checkpoint), "checkpoint_sha256": digest, "index": str(index_path),
               "image_size": size, "model": cfg.model_dump(), "splits": {}}
    per_expr: dict[str, list] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in eval_splits(index, splits):
        ds = ExpressionDataset.from_split(index, tokenizer, size, cfg.max_tokens, split=split, cache_images=False)
        res = evaluate_model(model, ds, batch_size=batch_size, device=dev, dtype=dtype, num_workers=num_workers,
                             sample_indices=pick_indices(len(ds), overlays), progress=progress, desc=f"eval {split}")
        results["splits"][split] = res.metrics
        per_expr[split] = [[e.ref_id, e.sent_id, round(float(v), 6)] for e, v in zip(ds.expressions, res.ious)]
        if res.samples:
            save_overlays(res.samples, out_dir / f"overlays_{split}.png",
                          title=f"{split}: mIoU {res.metrics['mIoU']:.1f}, oIoU {res.metrics['oIoU']:.1f}")
        if tracker is not None:
            tracker.log_metrics(res.metrics, prefix=f"{split}.")
    io.write_json(out_dir / "per_expression.json", {"columns": ["ref_id", "sent_id", "iou"], "splits": per_expr},
                  indent=None)
    io.write_json(out_dir / "results.json", results)
    if tracker is not None:
        for f in sorted(out_dir.glob("*.json")) + sorted(out_dir.glob("overlays_*.png")):
            tracker.log_artifact(f, "evaluation")
    io.mark_complete(out_dir, {"checkpoint_sha256": digest})
    return results
