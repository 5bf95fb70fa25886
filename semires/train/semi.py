"""Semi-supervised student training (SemiRES): mean teacher + SAM-guided pseudo-label refinement.

Each step takes equal labeled and unlabeled batches (the labeled stream wraps around):

1. unlabeled images -> weak view (blur, p 0.5) and strong view (colour jitter, p 0.5, on the weak view);
2. online mode: the EMA teacher (eval mode, no gradients) predicts on the weak view; its argmax
   masks P and probabilities are refined with the image's SAM candidates (IOM / CPI / PWA, see
   :mod:`semires.refine`). self_training mode: the targets stored by the ``refine`` stage;
3. the student predicts the labeled images and the strong views in one forward pass;
4. loss = sup_weight * CE(labeled) + unsup_lambda * L_unsup, where L_unsup is class-weighted CE on
   matched samples and PWA-weighted CE on unmatched ones, averaged when both occur (optional Dice terms
   on either); the student alone carries noise (stochastic depth, word dropout);
5. optimizer step, poly LR, then the EMA update of the teacher (every floating weight, text too
   when it is trained).

The teacher is evaluated on val every ``eval_every`` steps; the best by oIoU is kept. Outputs in
``out_dir``: config.json, last.pt (student + teacher + optimizer; resumable), best.safetensors
(the kept teacher), metrics.json, overlays_<val>.png, _SUCCESS. A NaN or infinite loss raises
:class:`~semires.errors.TrainingDiverged` before the step is applied; last.pt stays the last good state.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from semires import io
from semires.data.index import RefIndex
from semires.engine.checkpoint import load_model, load_model_file
from semires.engine.dataset import ExpressionDataset, batch_loader, warm_text_cache
from semires.engine.ddp import resolve_device
from semires.engine.loop import TRAIN_LOG, StepLoop, elapsed
from semires.engine.optim import build_optimizer, build_scheduler
from semires.engine.runtime import amp_dtype, autocast, configure, frozen_heap, seed_everything
from semires.engine.sampler import StreamBatchSampler
from semires.engine.transforms import logits_to_masks
from semires.errors import DataError, SemiresError
from semires.eval.evaluate import draw_predictions
from semires.eval.metrics import intersection_union, iou_from_counts
from semires.models import load_tokenizer
from semires.pseudo.predict import compete, ref_consensus, ref_probs, teacher_predict
from semires.refine import CandidateSource, RefineConfig, refine
from semires.refine.atoms import pack_for_device
from semires.tracking import Tracker, TrackingConfig
from semires.train.ema import MeanTeacher
from semires.train.evaluation import keep_best
from semires.train.losses import check_finite, segmentation_loss, supervised_loss
from semires.train.semi_config import SemiConfig
from semires.train.semi_data import UnlabeledDataset, collate_unlabeled
from semires.train.views import normalize_batch, step_generator, strong_view, weak_view

# semi fields that may change between a run and its resume without changing the result
RESUME_FREE = {"num_workers", "threads", "log_every", "eval_batch_size", "device", "checkpoint_every",
               "cache_images", "overlays", "candidate_cache_mb", "candidate_atom_cache"}


def unsup_loss(logits: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None, matched: torch.Tensor,
               class_weights: Sequence[float], dice_weight: float = 0.0) -> torch.Tensor:
    """L_unsup of SemiRES.

    Args:
        logits: (B, 2, S, S) student logits on the strong views.
        label: (B, S, S) bool/int refined labels.
        weight: (B, S, S) float PWA weights, or None for unweighted CE on unmatched samples.
        matched: (B,) bool.
        dice_weight: a soft Dice term added to each group's CE (0 = the paper).
    Returns:
        scalar: mean over the groups present of [class-weighted CE on matched samples,
        (PWA-weighted) class-weighted CE on unmatched samples] (+ ``dice_weight`` x Dice).
    """
    label = label.long()
    terms = []
    if bool(matched.any()):
        terms.append(segmentation_loss(logits[matched], label[matched], class_weights, dice_weight=dice_weight))
    um = ~matched
    if bool(um.any()):
        terms.append(segmentation_loss(logits[um], label[um], class_weights,
                                       pixel_weight=None if weight is None else weight[um], dice_weight=dice_weight))
    return torch.stack(terms).mean()


def burn_in_lr(burn_in: Path, info: dict) -> float:
    """The burn-in's peak learning rate: recorded in its model file, else in its folder's config.json."""
    if info.get("lr") is not None:
        return float(info["lr"])
    cfg_path = burn_in.parent / "config.json"
    if cfg_path.is_file():
        lr = io.read_json(cfg_path).get("burn_in", {}).get("lr")
        if lr is not None:
            return float(lr)
    raise SemiresError("the burn-in model does not say its learning rate", burn_in,
                       "set semi.lr explicitly, or retrain the burn-in with this version")


def confident(prob: torch.Tensor, pseudo: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which unlabeled samples the student trains on (``semi.min_confidence``).

    Args:
        prob: (B, S, S) float in [0, 1], the teacher's foreground probability.
        pseudo: (B, S, S) bool, the teacher's pseudo-mask.
        threshold: in [0, 1]; 0 keeps every sample (the paper).
    Returns:
        (B,) bool: mean of ``prob`` over the pseudo-mask >= ``threshold`` (an empty pseudo-mask
        scores 0). On RefShapes this score tells pseudo-masks on the referred object from those on
        another one with an AUC of about 0.85 (burn-in teachers at 1-10 % labels).
    """
    if threshold <= 0:
        return torch.ones(prob.shape[0], dtype=torch.bool, device=prob.device)
    fg = pseudo.flatten(1)
    score = (prob.flatten(1) * fg).sum(1) / fg.sum(1).clamp(min=1)
    return score >= threshold


def _resolved(model_cfg, cfg: SemiConfig, refine_cfg: RefineConfig, index: RefIndex, labeled, unlabeled,
              burn_in: Path, sources: dict) -> dict:
    ids = ",".join(str(i) for i in sorted(set(labeled)))
    return {"model": model_cfg.model_dump(mode="json"), "semi": cfg.model_dump(mode="json"),
            "refine": refine_cfg.model_dump(mode="json"),
            "data": {"index": str(index.path), "labeled_images": len(set(labeled)),
                     "unlabeled_images": len(set(unlabeled)),
                     "labeled_sha256": hashlib.sha256(ids.encode()).hexdigest(),
                     "burn_in": str(burn_in), "burn_in_sha256": io.sha256_file(burn_in), **sources}}


def _semi_diffs(saved: dict, current: dict) -> list[str]:
    """``semi.<key>`` for every setting (except :data:`RESUME_FREE`) that differs between two resolved configs."""
    old, new = saved.get("semi", {}), current["semi"]
    # a setting missing from a saved config was added later: the run had its default
    default = {k: f.default for k, f in SemiConfig.model_fields.items()}
    return [f"semi.{k}" for k in sorted(set(old) | set(new))
            if k not in RESUME_FREE and old.get(k, default.get(k)) != new.get(k, default.get(k))]


def _check_resume(saved: dict, current: dict, path: Path) -> None:
    diffs = _semi_diffs(saved, current)
    diffs += [s for s in ("model", "refine") if saved.get(s) != current[s]]
    diffs += [f"data.{k}" for k in ("labeled_sha256", "burn_in_sha256", "unlabeled_images")
              if saved.get("data", {}).get(k) != current["data"][k]]
    if diffs:
        raise SemiresError(f"last.pt was written with a different config ({', '.join(diffs)})", path,
                           "train into a new --out folder, or delete last.pt to start over")


def _check_finished(out_dir: Path, cfg: SemiConfig, refine_cfg: RefineConfig) -> None:
    """A finished folder is returned as is only for the same settings; another config is refused."""
    saved = io.read_json(out_dir / "config.json")
    current = {"semi": cfg.model_dump(mode="json"), "refine": refine_cfg.model_dump(mode="json")}
    diffs = _semi_diffs(saved, current)
    if cfg.mode == "online" and saved.get("refine") != current["refine"]:
        diffs.append("refine")
    if diffs:
        raise SemiresError(f"this folder holds a finished run with another config ({', '.join(diffs)})", out_dir,
                           "train into a new --out folder, or delete this one")


def train_semi(index: RefIndex | str | Path, labeled: Sequence[int], unlabeled: Sequence[int],
               burn_in: str | Path, out_dir: str | Path, cfg: SemiConfig | None = None,
               refine_cfg: RefineConfig | None = None, candidates: CandidateSource | None = None,
               refined_dir: str | Path | None = None, tracking: TrackingConfig | None = None, *,
               step_hook: Callable[[int], None] | None = None, progress: bool = True,
               run_name: str = "semi") -> dict:
    """Train a student from the burn-in checkpoint ``burn_in``; returns metrics.json's dict.

    Args:
        labeled, unlabeled: train image ids (the split's labeled.txt / unlabeled.txt).
        refine_cfg: online refinement rule; in self_training mode the refine stage's own settings
            (from its manifest) are used instead, so weights always match the stored labels.
        candidates: SAM candidate source (online mode, strategy iom / cpi).
        refined_dir: output of the ``refine`` stage (self_training mode).
        step_hook: called with the step number after each step (tests simulate kills with it).
    """
    cfg, refine_cfg = cfg or SemiConfig(), refine_cfg or RefineConfig()
    out_dir, burn_in = Path(out_dir), Path(burn_in)
    if io.is_complete(out_dir) and (out_dir / "metrics.json").is_file():
        _check_finished(out_dir, cfg, refine_cfg)
        return io.read_json(out_dir / "metrics.json")
    online = cfg.mode == "online"
    if online and refine_cfg.strategy != "none" and candidates is None:
        raise SemiresError(f"refine.strategy '{refine_cfg.strategy}' needs SAM candidates", None,
                           "pass the candidates stage output (--candidates), or set refine.strategy: none")
    if not online and refined_dir is None:
        raise SemiresError("semi.mode self_training needs the refine stage's output", None, "pass --refined")
    if not online and cfg.min_confidence > 0:
        raise SemiresError("semi.min_confidence filters the online teacher's pseudo-labels", None,
                           "set semi.min_confidence: 0 for self_training, or use semi.mode: online")
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    configure(device, cfg.deterministic, cfg.threads)
    dtype = amp_dtype(device, cfg.amp)
    index = index if isinstance(index, RefIndex) else RefIndex.load(index)
    seed_everything(cfg.seed)
    student, model_cfg, info = load_model(burn_in, device)
    size = int(cfg.image_size or info.get("image_size") or 480)
    tok = load_tokenizer(model_cfg.text_encoder)

    def dataset(split: str, ids) -> ExpressionDataset:
        return ExpressionDataset.from_split(index, tok, size, model_cfg.max_tokens, split=split, image_ids=ids,
                                            cache_images=cfg.cache_images)

    lab_ds, unl_base = dataset("train", labeled), dataset("train", unlabeled)
    val_ds = dataset(cfg.val_split, None).subset(cfg.val_max_expressions)
    for name, ds in (("labeled", lab_ds), ("unlabeled", unl_base), (cfg.val_split, val_ds)):
        if len(ds) == 0:
            raise DataError(f"no {name} expressions", index.path, "check the split folder belongs to this index")
    if cfg.ref_consensus and not online:
        raise SemiresError("semi.ref_consensus averages the online teacher over a ref's sentences", None,
                           "set semi.ref_consensus: false for self_training, or use semi.mode: online")
    unl_ds = UnlabeledDataset(unl_base, candidates if online and refine_cfg.strategy != "none" else None,
                              None if online else str(refined_dir),
                              cache_candidates=cfg.candidate_atom_cache,
                              ref_sentences=cfg.ref_sentences if cfg.ref_consensus else 0,
                              competing_refs=cfg.competing_refs if cfg.ref_competition else 0)
    if not online:
        refine_cfg = unl_ds.refine_cfg  # stored targets: the settings that made them, whatever params say now
    warm_text_cache(student, lab_ds, unl_base, val_ds, dtype=dtype)
    pair = MeanTeacher(student.train())
    if hasattr(student, "set_noise"):  # after the teacher's copy: the noise is the student's alone
        student.set_noise(cfg.student_drop_path, cfg.student_word_dropout)
    total = cfg.steps if cfg.epochs is None else max(1, math.ceil(cfg.epochs * len(unl_ds) / cfg.unlabeled_batch))
    effective = {"lr": burn_in_lr(burn_in, info) if cfg.lr is None else cfg.lr,
                 "sup_weight": cfg.sup_weight_for(refine_cfg.strategy), "ema_momentum": cfg.momentum_for(total),
                 "steps": total}
    optimizer = build_optimizer(student, effective["lr"], cfg.weight_decay, cfg.betas)
    scheduler = build_scheduler(optimizer, total, cfg.poly_power, cfg.warmup_steps)
    sources = {"candidates": None if candidates is None else str(getattr(candidates, "dir", type(candidates).__name__)),
               "refined": None if refined_dir is None else str(refined_dir)}
    resolved = _resolved(model_cfg, cfg, refine_cfg, index, labeled, unlabeled, burn_in, sources)
    resolved["effective"] = effective

    state = {"best": None, "best_step": None, "history": []}
    loop = StepLoop(out_dir, model=pair, optimizer=optimizer, scheduler=scheduler, device=device, config=resolved,
                    check_config=lambda saved, path: _check_resume(saved, resolved, path), state=state)

    def batches(step: int, stop: int):
        return zip(batch_loader(lab_ds, StreamBatchSampler(len(lab_ds), cfg.batch_size, cfg.seed, step, stop),
                                num_workers=cfg.num_workers),
                   DataLoader(unl_ds, batch_sampler=StreamBatchSampler(len(unl_ds), cfg.unlabeled_batch, cfg.seed + 1,
                                                                       step, stop),
                              num_workers=cfg.num_workers, collate_fn=collate_unlabeled))

    def train_step(batch: tuple[dict, dict], step: int) -> dict:
        lab, unl = batch
        return _step(pair, optimizer, scheduler, lab, unl, cfg, effective, refine_cfg, online, size, device, dtype,
                     step, loop.resumable)

    def evaluate(step: int) -> None:
        keep_best(pair.teacher, val_ds, step=step, state=state, key=("best_step", step), out_dir=out_dir,
                  model_cfg=model_cfg, info={"image_size": size, "role": "ema_teacher"}, trk=trk,
                  val_split=cfg.val_split, batch_size=cfg.eval_batch_size, device=device, dtype=dtype,
                  progress=progress, desc=f"val step {step}")

    tracker = Tracker(tracking, out_dir)
    tags = {"semires.mode": cfg.mode, "semires.refine": refine_cfg.name,
            "semires.labeled_images": str(len(set(labeled)))}
    with frozen_heap(), tracker.run(run_name, tags, run_id=state["run_id"]) as trk:
        state["run_id"] = trk.run_id
        trk.log_params(resolved)
        loop.run(trk, total=total, segment_end=lambda step: (step // cfg.eval_every + 1) * cfg.eval_every,
                 batches=batches, train_step=train_step, after_segment=evaluate, log_every=cfg.log_every,
                 checkpoint_every=cfg.checkpoint_every, progress=progress,
                 desc=lambda step, stop: f"semi {step}/{total}", step_hook=step_hook)
        result = {"best_step": state["best_step"], "best": state["best"], "train_log": state.get(TRAIN_LOG, []),
                  "last": state["history"][-1] if state["history"] else None, "history": state["history"],
                  "steps": total, "mode": cfg.mode, "labeled_expressions": len(lab_ds),
                  "unlabeled_expressions": len(unl_ds), "val_expressions": len(val_ds),
                  "train_s": round(state["train_s"], 2), "wall_s_this_process": elapsed(t_start)}
        if (out_dir / "best.safetensors").is_file():
            # the kept teacher's predictions, drawn once (its weights replace the teacher's: training is over)
            load_model_file(pair.teacher, out_dir / "best.safetensors")
            m = state["best"]
            draw_predictions(pair.teacher, val_ds, cfg.overlays, out_dir / f"overlays_{cfg.val_split}.png",
                             f"teacher, {cfg.val_split} step {state['best_step']}: mIoU {m['mIoU']:.1f}, "
                             f"oIoU {m['oIoU']:.1f}", batch_size=cfg.eval_batch_size, device=device, dtype=dtype)
        return loop.finish(trk, result, metrics={f"best.{k}": v for k, v in (state["best"] or {}).items()},
                           artifacts=("metrics.json", f"overlays_{cfg.val_split}.png", "best.safetensors",
                                      "config.json"),
                           summary={"steps": total, "best_val_oIoU": (state["best"] or {}).get("oIoU")})


def _step(pair: MeanTeacher, optimizer, scheduler, lab: dict, unl: dict, cfg: SemiConfig, effective: dict,
          refine_cfg: RefineConfig, online: bool, size: int, device, dtype, step: int,
          last: Path | None) -> dict[str, float]:
    gen = step_generator(cfg.seed, step)
    raw = unl["raw"].to(device).float().div_(255.0)
    weak = weak_view(raw, gen, cfg.blur_p, (cfg.blur_sigma[0] * size, cfg.blur_sigma[1] * size))
    strong = strong_view(weak, gen, cfg.jitter_p, cfg.jitter_brightness, cfg.jitter_contrast, cfg.jitter_saturation,
                         cfg.jitter_hue)
    ids_u, mask_u = unl["input_ids"].to(device), unl["attention_mask"].to(device)
    truth = unl["truth"].to(device)
    agreement = removed = None
    if online:
        seen = normalize_batch(weak)
        if cfg.ref_consensus:
            prob, pseudo, agreement = ref_consensus(pair.teacher, seen, unl["ref_input_ids"].to(device),
                                                    unl["ref_attention_mask"].to(device), unl["ref_valid"].to(device),
                                                    dtype)
        else:
            prob, pseudo = teacher_predict(pair.teacher, seen, ids_u, mask_u, dtype)
        if cfg.ref_competition:
            valid = unl["rival_valid"].to(device)
            rivals = ref_probs(pair.teacher, seen, unl["rival_input_ids"].to(device),
                               unl["rival_attention_mask"].to(device), valid, dtype)
            prob = compete(prob, rivals, valid.any(2))
            kept = prob > 0.5
            removed = (pseudo & ~kept).flatten(1).sum(1) / pseudo.flatten(1).sum(1).clamp(min=1)
            pseudo = kept
        cands = pack_for_device(unl["candidates"], device) if "candidates" in unl else None
        res = refine(pseudo, prob, cands, refine_cfg)
        label, weight, matched = res.label, res.weight, res.matched
        keep = confident(prob, pseudo, cfg.min_confidence)
        if agreement is not None:
            keep &= agreement >= cfg.min_agreement
    else:
        pseudo = None
        label, weight, matched = unl["label"].to(device).bool(), unl["weight"].to(device), unl["matched"].to(device)
        keep = torch.ones_like(matched)
    b = lab["image"].shape[0]
    images = torch.cat([lab["image"].to(device), normalize_batch(strong)])
    ids = torch.cat([lab["input_ids"].to(device), ids_u])
    att = torch.cat([lab["attention_mask"].to(device), mask_u])
    if hasattr(pair.student, "seed_noise"):  # the student's noise follows from (seed, step), like the views
        pair.student.seed_noise(torch.Generator(device=device).manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=gen))))
    with autocast(device, dtype):
        logits = pair.student(images, ids, att)
    l_sup = supervised_loss(logits[:b], lab["mask"].to(device), cfg.class_weights, cfg.dice_weight)
    if bool(keep.any()):
        l_unsup = unsup_loss(logits[b:][keep], label[keep], weight[keep] if refine_cfg.pwa else None, matched[keep],
                             cfg.unsup_class_weights, cfg.unsup_dice_weight)
    else:  # no confident sample: a zero that keeps the graph (and DDP's gradient buckets) whole
        l_unsup = logits[b:].float().sum() * 0.0
    loss = effective["sup_weight"] * l_sup + cfg.unsup_lambda * l_unsup
    check_finite(loss, step + 1, last)
    optimizer.zero_grad(set_to_none=True)
    shares = (gradient_share(pair.student, effective["sup_weight"] * l_sup, cfg.unsup_lambda * l_unsup)
              if (step + 1) % cfg.log_every == 0 else {})
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(pair.student.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    pair.update_teacher(effective["ema_momentum"])
    parts = {"loss": float(loss.detach()), "loss_sup": float(l_sup.detach()), "loss_unsup": float(l_unsup.detach()),
             "match_rate": float(matched.float().mean()), "kept_rate": float(keep.float().mean()), **shares}
    if agreement is not None:
        parts["ref_agreement"] = float(agreement.mean())
    if removed is not None:  # share of the consensus pseudo-mask that another ref of the image claimed
        parts["rival_removed"] = float(removed.mean())
    # how well the student follows its targets: IoU of its strong-view prediction with the pseudo-label
    parts["student_fit"] = float(iou_from_counts(*intersection_union(logits_to_masks(logits[b:].detach()),
                                                                       label.bool())).mean())
    # pseudo-label quality against the truth: logged to watch the teacher, never trained on
    i_a, u_a = intersection_union(label, truth)
    iou_a = i_a / u_a.clip(min=1)
    parts["pseudo_iou_refined"] = float(iou_a.mean())
    parts["pseudo_on_target_refined"] = float((iou_a >= 0.5).mean())
    if pseudo is not None:
        i_b, u_b = intersection_union(pseudo, truth)
        iou_b = i_b / u_b.clip(min=1)
        parts["pseudo_iou_teacher"] = float(iou_b.mean())
        parts["pseudo_on_target"] = float((iou_b >= 0.5).mean())
    return parts


def gradient_share(model: torch.nn.Module, sup: torch.Tensor, unsup: torch.Tensor) -> dict[str, float]:
    """How much of the update the unlabeled term drives: the L2 norms of the gradients of the weighted
    supervised and unsupervised losses over the trainable parameters, ``grad_share_unsup`` =
    |g_unsup| / (|g_sup| + |g_unsup|), and their cosine. Costs two extra backward passes (logged steps only)."""
    params = [p for p in model.parameters() if p.requires_grad]
    g_s = torch.autograd.grad(sup, params, retain_graph=True, allow_unused=True)
    g_u = torch.autograd.grad(unsup, params, retain_graph=True, allow_unused=True)
    flat_s = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float() for g, p in zip(g_s, params)])
    flat_u = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float() for g, p in zip(g_u, params)])
    n_s, n_u = float(flat_s.norm()), float(flat_u.norm())
    cos = float(flat_s @ flat_u) / max(n_s * n_u, 1e-30)
    return {"grad_norm_sup": n_s, "grad_norm_unsup": n_u, "grad_share_unsup": n_u / max(n_s + n_u, 1e-30),
            "grad_cosine": cos}
