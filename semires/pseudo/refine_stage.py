"""The ``refine`` stage: SAM-guided refinement of stored pseudo-labels, and its quality report.

Reads a finished pseudo-label folder (:mod:`semires.pseudo.shards`) and an image's candidates
from a :class:`~semires.refine.packing.CandidateSource`; writes into ``out``::

    refined-00000.json ...  per pseudo shard: {"format", "config_sha", "items": [{"ref_id", "sent_id",
                            "image_id", "matched", "score", "parts", "rle", "before": [I, U], "after": [I, U]}]}
                            ``rle`` is the training label (the refined mask where matched, else the
                            pseudo-mask); weights are recomputed from the stored probabilities
                            (PWA, see :func:`load_refined`). ``before``/``after`` are intersection and
                            union with the true mask at the prediction size (diagnostics only).
    report.json             pseudo-label quality against the truth before and after refinement, match rate
    overlays.png            examples: truth green, pseudo-mask red, refined label blue
    manifest.json, _SUCCESS

Refined shards are the unit of resume. RefShapes (and RefCOCO, where "unlabeled" is simulated)
know the truth of every unlabeled ref; it is read here for the report and never for training.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from semires import io
from semires.data import masks as mask_codec
from semires.data.index import RefIndex
from semires.engine.transforms import resize_image, resize_mask
from semires.errors import DataError, SemiresError
from semires.eval.metrics import iou_from_counts, res_metrics_from_counts
from semires.pseudo.config import RefineStageConfig
from semires.pseudo.shards import PseudoStore, dequantize
from semires.refine import CandidateSource, RefineConfig, gather_candidates, needs_candidates, pwa_weight, refine
from semires.tracking import Tracker, TrackingConfig

REFINED_FORMAT = "semires-refined/1"


def _config_sha(cfg: RefineConfig, pseudo_sha: str) -> str:
    blob = json.dumps({"refine": cfg.model_dump(mode="json"), "pseudo": pseudo_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_refine(index: RefIndex | str | Path, pseudo_dir: str | Path, candidates: CandidateSource | None,
               out_dir: str | Path, cfg: RefineConfig | None = None, stage: RefineStageConfig | None = None,
               tracking: TrackingConfig | None = None, progress: bool = True) -> dict:
    """Refine every stored pseudo-label with ``cfg``; returns the report (see module docstring).

    ``candidates`` may be None only for ``cfg.strategy == "none"``.
    """
    cfg, stage = cfg or RefineConfig(), stage or RefineStageConfig()
    out_dir = Path(out_dir)
    store = PseudoStore(pseudo_dir)
    pseudo_sha = io.sha256_file(store.root / "manifest.json")
    sha = _config_sha(cfg, pseudo_sha)
    if io.is_complete(out_dir):
        if io.read_json(out_dir / "manifest.json").get("config_sha") == sha:
            return io.read_json(out_dir / "report.json")
        raise SemiresError("this folder holds labels refined with other settings or pseudo-labels", out_dir,
                           "write to a new --out folder, or delete this one")
    if candidates is None and needs_candidates(cfg.strategy):
        raise SemiresError(f"refine.strategy '{cfg.strategy}' needs SAM candidates", None,
                           "pass --candidates (the candidates stage output)")
    t0 = time.perf_counter()
    index = index if isinstance(index, RefIndex) else RefIndex.load(index)
    size = store.image_size
    device = torch.device(stage.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(tracking, out_dir)
    files = []
    with tracker.run("refine", {"semires.stage": "refine", "semires.refine": cfg.name}) as trk:
        trk.log_params({"refine": cfg.model_dump(mode="json"), "refine_stage": stage.model_dump(mode="json"),
                        "pseudo_dir": str(pseudo_dir), "image_size": size})
        bar = tqdm(total=len(store), desc=f"refine ({cfg.name})", unit="expr", disable=not progress)
        for i in range(len(store.shard_files)):
            path = out_dir / f"refined-{i:05d}.json"
            if not (path.is_file() and _readable(path, sha)):
                _refine_shard(store, i, index, candidates, cfg, stage, size, device, path, sha)
            files.append(path.name)
            bar.update(len(store.shard(i)))
        bar.close()
        items = [it for f in files for it in io.read_json(out_dir / f)["items"]]
        report = quality_report(items, cfg, size)
        report["wall_s"] = round(time.perf_counter() - t0, 2)
        io.write_json(out_dir / "report.json", report)
        if stage.overlays:
            draw_overlays(items, store, index, size, out_dir / "overlays.png", stage.overlays, cfg.name)
        io.write_json(out_dir / "manifest.json", {"format": REFINED_FORMAT, "config_sha": sha, "files": files,
                                                  "refine": cfg.model_dump(mode="json"), "image_size": size,
                                                  "pseudo_dir": str(pseudo_dir), "expressions": len(items)})
        trk.log_metrics(_flat_report(report))
        for name in ("report.json", "overlays.png", "manifest.json"):
            trk.log_artifact(out_dir / name)
    io.mark_complete(out_dir, {"config_sha": sha, "expressions": len(items)})
    return report


def _readable(path: Path, sha: str) -> bool:
    try:
        doc = io.read_json(path)
    except DataError:
        return False
    return doc.get("format") == REFINED_FORMAT and doc.get("config_sha") == sha


def _refine_shard(store: PseudoStore, i: int, index: RefIndex, candidates, cfg: RefineConfig,
                  stage: RefineStageConfig, size: int, device, path: Path, sha: str) -> None:
    sh = store.shard(i)
    masks = torch.from_numpy(sh.masks())
    items = []
    truth_cache: dict[int, torch.Tensor] = {}
    atoms: dict = {}  # image id -> AtomCandidates: expressions of one image share its atoms
    for s in range(0, len(sh), stage.batch_size):
        rows = slice(s, min(len(sh), s + stage.batch_size))
        pseudo = masks[rows].to(device)
        prob = dequantize(sh.prob[rows]).to(device)
        image_ids = sh.image_id[rows].tolist()
        cands = gather_candidates(candidates, image_ids, size, device, atoms) if needs_candidates(cfg.strategy) else None
        res = refine(pseudo, prob, cands, cfg)
        truth = torch.stack([_truth(index, int(r), size, truth_cache) for r in sh.ref_id[rows].tolist()]).to(device)
        before = ((pseudo & truth).flatten(1).sum(1), (pseudo | truth).flatten(1).sum(1))
        after = ((res.label & truth).flatten(1).sum(1), (res.label | truth).flatten(1).sum(1))
        rles = mask_codec.encode_many(res.label.cpu().numpy())
        for j in range(pseudo.shape[0]):
            items.append({"ref_id": int(sh.ref_id[s + j]), "sent_id": int(sh.sent_id[s + j]),
                          "image_id": int(image_ids[j]), "matched": bool(res.matched[j]),
                          "score": round(float(res.score[j]), 6), "parts": int(res.parts[j]), "rle": rles[j],
                          "before": [int(before[0][j]), int(before[1][j])],
                          "after": [int(after[0][j]), int(after[1][j])]})
    io.write_json(path, {"format": REFINED_FORMAT, "config_sha": sha, "strategy": cfg.strategy, "pwa": cfg.pwa,
                         "items": items}, indent=None)


def _truth(index: RefIndex, ref_id: int, size: int, cache: dict[int, torch.Tensor]) -> torch.Tensor:
    if ref_id not in cache:
        cache[ref_id] = torch.from_numpy(resize_mask(index.ref_mask(ref_id), size))
    return cache[ref_id]


def quality_report(items: list[dict], cfg: RefineConfig, size: int, on_target_iou: float = 0.5) -> dict:
    """Pseudo-label quality against the truth (percent), before and after refinement, overall and by group.

    Groups: ``matched`` / ``unmatched`` (did refinement find candidates), and ``on_target`` /
    ``off_target``: pseudo-labels whose IoU with the truth is >= ``on_target_iou`` before refinement
    (the teacher found the referred object) or below (it segmented another object, or none).
    Refinement can sharpen the first kind; it has nothing right to sharpen in the second.
    """
    def metrics(sel: list[dict], key: str) -> dict:
        i = np.array([it[key][0] for it in sel], np.int64)
        u = np.array([it[key][1] for it in sel], np.int64)
        m = res_metrics_from_counts(i, u)
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in m.items()}  # JSON has no NaN

    matched = [it for it in items if it["matched"]]
    unmatched = [it for it in items if not it["matched"]]
    before, after = metrics(items, "before"), metrics(items, "after")
    groups = {}
    hit = iou_from_counts(np.array([it["before"][0] for it in items], np.int64),
                          np.array([it["before"][1] for it in items], np.int64)) >= on_target_iou
    on_target = [it for it, h in zip(items, hit) if h]
    off_target = [it for it, h in zip(items, hit) if not h]
    for name, sel in (("matched", matched), ("unmatched", unmatched), ("on_target", on_target),
                      ("off_target", off_target)):
        groups[name] = {"n": len(sel), "before": metrics(sel, "before"), "after": metrics(sel, "after")}
    changed = [it for it in matched if _iou(it["after"]) != _iou(it["before"])]
    return {"strategy": cfg.strategy, "pwa": cfg.pwa, "variant": cfg.name, "image_size": size, "n": len(items),
            "match_rate": 100.0 * len(matched) / max(1, len(items)),
            "mean_parts_when_matched": float(np.mean([it["parts"] for it in matched])) if matched else 0.0,
            "before": before, "after": after,
            "delta_mIoU": after["mIoU"] - before["mIoU"] if items else None,
            "delta_oIoU": after["oIoU"] - before["oIoU"] if items else None,
            "improved": sum(_iou(it["after"]) > _iou(it["before"]) for it in changed),
            "worsened": sum(_iou(it["after"]) < _iou(it["before"]) for it in changed),
            "groups": groups, "on_target_iou": on_target_iou,
            "note": "IoU with the true mask at the prediction size; labels of unmatched samples are the pseudo-masks"}


def _iou(iu: list[int]) -> float:
    return float(iou_from_counts(np.array([iu[0]]), np.array([iu[1]]))[0])


def _flat_report(report: dict) -> dict:
    out = {"match_rate": report["match_rate"], "delta_mIoU": report["delta_mIoU"],
           "delta_oIoU": report["delta_oIoU"]}
    for when in ("before", "after"):
        for k in ("mIoU", "oIoU", "prec@0.5"):
            out[f"pseudo.{when}.{k}"] = report[when][k]
    return {k: v for k, v in out.items() if v is not None}


def draw_overlays(items: list[dict], store: PseudoStore, index: RefIndex, size: int, path: Path, n: int,
                  title: str) -> None:
    """A grid of examples (matched and unmatched alternating, evenly spaced): truth green, pseudo red, refined blue."""
    from semires.viz import overlay, save_grid

    matched = [it for it in items if it["matched"]]
    unmatched = [it for it in items if not it["matched"]]
    pick: list[dict] = []
    for group in (matched, unmatched):
        k = min(len(group), (n + 1) // 2 if matched and unmatched else n)
        pick += [group[int(j)] for j in np.linspace(0, len(group) - 1, k).round().astype(int)] if k else []
    sents = {(int(r["ref_id"]), int(s["sent_id"])): s["sent"] for r in index.refs.values() for s in r["sentences"]}
    panels = []
    for it in pick[:n]:
        _, pseudo = store.get((it["ref_id"], it["sent_id"]))
        truth = resize_mask(index.ref_mask(it["ref_id"]), size)
        label = mask_codec.decode(it["rle"])
        img = resize_image(index.load_image(it["image_id"]), size)
        tag = f"matched {it['score']:.2f}" if it["matched"] else "unmatched"
        cap = (f"{sents.get((it['ref_id'], it['sent_id']), '')} | {tag} | IoU {_iou(it['before']):.2f} -> "
               f"{_iou(it['after']):.2f}")
        panels.append((overlay(img, [truth, pseudo, label], alpha=0.35), cap))
    save_grid(panels, path, title=f"{title}: truth green, pseudo-mask red, refined blue")


@dataclass(frozen=True)
class RefinedLabel:
    """One stored training target: label (S, S) bool, weight (S, S) float32, matched flag and score."""

    label: np.ndarray
    weight: np.ndarray
    matched: bool
    score: float


def load_refined(refined_dir: str | Path) -> tuple[dict[tuple[int, int], dict], RefineConfig, str]:
    """Read a finished refine folder: ({(ref_id, sent_id): item}, the refine config it used, its pseudo_dir)."""
    refined_dir = Path(refined_dir)
    if not io.is_complete(refined_dir):
        raise DataError("refined-label folder is incomplete (no _SUCCESS)", refined_dir, "run the refine stage")
    manifest = io.read_json(refined_dir / "manifest.json")
    out = {}
    for f in manifest["files"]:
        for it in io.read_json(refined_dir / f)["items"]:
            out[(it["ref_id"], it["sent_id"])] = it
    return out, RefineConfig.model_validate(manifest["refine"]), manifest["pseudo_dir"]


def refined_target(item: dict, prob_q: np.ndarray, cfg: RefineConfig) -> RefinedLabel:
    """Rebuild a training target from a stored item and its uint8 probabilities: the label from the
    RLE, the weight 1 where matched, else PWA of the dequantised probability (1 without PWA)."""
    label = mask_codec.decode(item["rle"])
    if item["matched"] or not cfg.pwa:
        weight = np.ones(label.shape, np.float32)
    else:
        weight = pwa_weight(dequantize(prob_q), cfg.pwa_offset, cfg.pwa_mu, cfg.pwa_var).numpy()
    return RefinedLabel(label, weight, bool(item["matched"]), float(item["score"]))
