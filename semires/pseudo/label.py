"""The ``pseudo_label`` stage: the burn-in teacher's predictions for every unlabeled expression.

Writes ``<out>/shard-*.npz`` (uint8 probabilities + exact argmax masks, see
:mod:`semires.pseudo.shards`), ``manifest.json`` and ``_SUCCESS``. Shards are the unit of
resume: a rerun keeps every readable shard and predicts only the missing ones; a finished folder
(``_SUCCESS`` with the same teacher) is returned as is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import BatchSampler
from tqdm import tqdm

from semires import io
from semires.data.index import RefIndex
from semires.errors import DataError, NonFiniteError, SemiresError
from semires.pseudo.config import PseudoLabelConfig
from semires.pseudo.predict import teacher_predict
from semires.pseudo.shards import FORMAT, read_keys, shard_name, write_shard
from semires.tracking import Tracker, TrackingConfig


def run_pseudo_label(index: RefIndex | str | Path, unlabeled: Sequence[int], checkpoint: str | Path,
                     out_dir: str | Path, cfg: PseudoLabelConfig | None = None,
                     tracking: TrackingConfig | None = None, progress: bool = True) -> dict:
    """Predict every expression of ``cfg.split`` on the ``unlabeled`` image ids; returns the manifest.

    Args:
        index: the dataset index (or its path).
        unlabeled: image ids to pseudo-label (the split's unlabeled.txt).
        checkpoint: the teacher (``best.safetensors`` of the burn-in stage).
    """
    from semires.engine import ddp
    from semires.engine.checkpoint import load_model
    from semires.engine.dataset import ExpressionDataset
    from semires.engine.runtime import amp_dtype
    from semires.models import load_tokenizer

    cfg = cfg or PseudoLabelConfig()
    out_dir, checkpoint = Path(out_dir), Path(checkpoint)
    digest = io.sha256_file(checkpoint) if checkpoint.is_file() else None
    if io.is_complete(out_dir):
        done = io.read_json(out_dir / "manifest.json")
        if done.get("teacher_sha256") == digest:
            return done
        raise SemiresError("this folder holds pseudo-labels of a different teacher", out_dir,
                           "write to a new --out folder, or delete this one")
    t0 = time.perf_counter()
    index = index if isinstance(index, RefIndex) else RefIndex.load(index)
    device = ddp.resolve_device(cfg.device)
    model, model_cfg, info = load_model(checkpoint, device)
    size = int(cfg.image_size or info.get("image_size") or 480)
    ds = ExpressionDataset.from_split(index, load_tokenizer(model_cfg.text_encoder), size, model_cfg.max_tokens,
                                      split=cfg.split, image_ids=unlabeled, cache_images=False)
    if len(ds) == 0:
        raise DataError(f"no '{cfg.split}' expressions on the {len(unlabeled)} unlabeled images", index.path,
                        "check that the split's unlabeled.txt belongs to this index")
    dtype = amp_dtype(device, cfg.amp)
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(ds), cfg.shard_size))
    shards, reused = [], 0
    tracker = Tracker(tracking, out_dir)
    with tracker.run("pseudo_label", {"semires.stage": "pseudo_label"}) as trk:
        trk.log_params({"pseudo_label": cfg.model_dump(mode="json"), "teacher": str(checkpoint),
                        "image_size": size, "unlabeled_images": len(set(unlabeled))})
        bar = tqdm(total=len(ds), desc="pseudo-label", unit="expr", disable=not progress)
        for i, start in enumerate(starts):
            rows = list(range(start, min(len(ds), start + cfg.shard_size)))
            path = out_dir / shard_name(i)
            want = [(ds.expressions[r].ref_id, ds.expressions[r].sent_id) for r in rows]
            if path.is_file() and _same_keys(path, want):
                reused += 1
            else:
                try:
                    _predict_shard(model, ds, rows, path, cfg, device, dtype)
                except NonFiniteError as exc:
                    raise NonFiniteError(f"{exc.what.split(';')[0]} (predicting {path.name}; nothing written)", checkpoint,
                                         "this teacher is broken or diverged: retrain it (the burn_in stage)") from None
            shards.append({"file": path.name, "count": len(rows), "sha256": io.sha256_file(path)})
            bar.update(len(rows))
        bar.close()
        manifest = {"format": FORMAT, "image_size": size, "split": cfg.split, "shards": shards,
                    "expressions": len(ds), "images": len({e.image_id for e in ds.expressions}),
                    "refs": len({e.ref_id for e in ds.expressions}), "teacher": str(checkpoint),
                    "teacher_sha256": digest, "index": str(index.path), "shards_reused": reused,
                    "wall_s": round(time.perf_counter() - t0, 2)}
        io.write_json(out_dir / "manifest.json", manifest)
        trk.log_metrics({"expressions": len(ds), "shards": len(shards), "wall_s": manifest["wall_s"]})
        trk.log_artifact(out_dir / "manifest.json")
    io.mark_complete(out_dir, {"teacher_sha256": digest, "expressions": len(ds)})
    return manifest


def _same_keys(path: Path, want: list[tuple[int, int]]) -> bool:
    try:
        return read_keys(path) == want
    except DataError:
        return False  # a foreign or damaged file is predicted again and replaced


def _predict_shard(model, ds, rows: list[int], path: Path, cfg: PseudoLabelConfig, device, dtype) -> None:
    from semires.engine.dataset import batch_loader

    loader = batch_loader(ds, BatchSampler(rows, cfg.batch_size, drop_last=False), num_workers=cfg.num_workers)
    probs, masks, ref_ids, sent_ids, image_ids = [], [], [], [], []
    for batch in loader:
        prob, mask = teacher_predict(model, batch["image"].to(device), batch["input_ids"].to(device),
                                     batch["attention_mask"].to(device), dtype)
        probs.append(prob.cpu())
        masks.append(mask.cpu())
        ref_ids += batch["ref_id"].tolist()
        sent_ids += batch["sent_id"].tolist()
        image_ids += batch["image_id"].tolist()
    write_shard(path, ref_ids, sent_ids, image_ids, torch.cat(probs), torch.cat(masks))
