#!/usr/bin/env python
"""Candidate generation, side by side: SAM automatic masks (segment-anything's vanilla generator vs
semires' fast one, same model, same images), the embedded stand-in's speed and recall on RefShapes,
the store loader's cost against a training step, and SAM calls per image vs per ref.

    python benchmarks/candidates_bench.py                 # CPU: writes benchmarks/results/candidates.json
    python benchmarks/candidates_bench.py --device cuda --out $OUT/candidates_gpu.json --sections sam
    python benchmarks/candidates_bench.py --quick         # a minute-long smoke run (small numbers)

SAM models have random weights (no checkpoint is read): timing and the agreement of two
implementations on one model need no trained weights. Two mask regimes per model:

* ``random``: the network's own masks. Random weights give noise-like masks that all cover the
  image; the predicted-IoU threshold is set to the median predicted IoU of the first image and the
  stability filter is off (equally for both implementations), so half the masks reach
  post-processing. Noise masks make run-length encoding unusually long: a worst case for vanilla.
* ``disc``: the real encoder, prompt encoder and mask decoder still run (their cost is kept) but the
  mask logits are replaced by analytic discs around each prompt (``semires.candidates.disc_sam``),
  so the published AMG thresholds (pred IoU 0.88, stability 0.95, NMS 0.7) keep an object-like set.

On the CPU, times are process CPU seconds with one torch thread (the shared 2-core machine makes
wall clock noisy); on CUDA, wall clock after a warm-up image.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semires.candidates.recall import mask_iou


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev: torch.device):
    """(result, seconds): CPU seconds of this process on the CPU, wall seconds on CUDA."""
    _sync(dev)
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    out = fn()
    _sync(dev)
    return out, (time.perf_counter() - t_wall) if dev.type == "cuda" else (time.process_time() - t_cpu)


def _refshapes(root: Path, preset: str, num_images: int | None = None):
    from semires.data.index import RefIndex, build_index
    from semires.data.synthetic import generate

    name = f"{preset}-{num_images or 'all'}"
    d = generate(root / name, preset=preset, seed=0, num_images=num_images, progress=False)
    idx = build_index(d, d / "images", root / f"{name}.json", dataset="refshapes", progress=False)
    return RefIndex.load(idx)


# ----------------------------------------------------------------------------------------------- SAM
def _median_iou(sam, image: np.ndarray, pps: int, batch: int) -> float:
    """Median predicted IoU over all point prompts of one image (the random regime's threshold)."""
    from segment_anything.predictor import SamPredictor
    from segment_anything.utils.amg import build_point_grid

    pred = SamPredictor(sam)
    pred.set_image(image)
    pts = build_point_grid(pps) * np.array(image.shape[:2])[None, ::-1]
    ious = []
    with torch.no_grad():
        for s in range(0, len(pts), batch):
            c = torch.as_tensor(pred.transform.apply_coords(pts[s:s + batch], image.shape[:2]), device=sam.device)
            lab = torch.ones(len(c), dtype=torch.int, device=sam.device)
            _, iou, _ = pred.predict_torch(c[:, None], lab[:, None], multimask_output=True, return_logits=True)
            ious.append(iou.flatten().float().cpu())
    return float(torch.cat(ious).median())


def _agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, bool]:
    """(matched mIoU: mean over both sides of each mask's best IoU on the other side, exactly equal)."""
    if len(ref) == 0 and len(got) == 0:
        return 1.0, True
    if len(ref) == 0 or len(got) == 0:
        return 0.0, False
    m = mask_iou(ref, got)
    return float(np.concatenate([m.max(1), m.max(0)]).mean()), ref.shape == got.shape and bool(np.array_equal(ref, got))


def sam_cases(dev: torch.device, images: list[np.ndarray], cases: list[dict], budget_s: float,
              partial: Path | None = None) -> list[dict]:
    """Time and compare the AMG implementations; after each regime the entries so far are written to
    ``partial`` (so a run stopped by a time limit still leaves its numbers)."""
    from segment_anything import SamAutomaticMaskGenerator

    from semires.candidates.disc_sam import with_disc_masks
    from semires.candidates.fast_amg import FastAutomaticMaskGenerator
    from semires.candidates.sam_models import build_sam_arch

    out = []
    for case in cases:
        t_build = time.perf_counter()
        base = build_sam_arch(case["model"], img_size=case["img_size"]).to(dev)
        print(f"[sam] built {case['model']} @ {case['img_size']} in {time.perf_counter() - t_build:.1f}s", flush=True)
        for regime in case["regimes"]:
            sam = base if regime == "random" else with_disc_masks(base, real_compute=True)
            if regime == "random":
                kw = {"pred_iou_thresh": _median_iou(sam, images[0], case["pps"], 64), "stability_score_thresh": 0.0}
            else:
                kw = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
            kw.update(points_per_side=case["pps"], box_nms_thresh=0.7)
            impls = {"vanilla": SamAutomaticMaskGenerator(sam, points_per_batch=64, output_mode="binary_mask", **kw)}
            for ppb in case["fast_ppb"]:
                impls[f"fast (batch {ppb})"] = FastAutomaticMaskGenerator(sam, points_per_batch=ppb, **kw)
            if dev.type == "cuda":
                ppb = max(case["fast_ppb"])
                impls[f"fast+bf16 encoder (batch {ppb})"] = FastAutomaticMaskGenerator(sam, points_per_batch=ppb,
                                                                                      encoder_bf16=True, **kw)
            res = {name: {"seconds": [], "counts": [], "miou": [], "exact": [], "survivors": []} for name in impls}
            if case.get("warmup", True) and regime == case["regimes"][0]:  # later regimes reuse warm kernels
                for g in impls.values():
                    g.generate(images[0])
            spent = 0.0
            for i, img in enumerate(images[:case["n_images"]]):
                if i and spent > budget_s:
                    break
                t_img = time.perf_counter()
                ref = None
                for name, g in impls.items():
                    if name == "vanilla":
                        r, sec = _timed(lambda g=g, img=img: g.generate(img), dev)
                        masks = (np.stack([a["segmentation"] for a in r]) if r
                                 else np.zeros((0, *img.shape[:2]), bool))
                        ref = masks
                    else:  # timed up to host numpy masks, as vanilla returns them
                        masks, sec = _timed(lambda g=g, img=img: g.generate(img).masks.cpu().numpy(), dev)
                        res[name]["survivors"].append(g.last_counts.get("edge", 0))
                    miou, exact = _agreement(ref, masks)
                    res[name]["seconds"].append(sec)
                    res[name]["counts"].append(len(masks))
                    res[name]["miou"].append(miou)
                    res[name]["exact"].append(exact)
                spent += time.perf_counter() - t_img
            for name, r in res.items():
                s = float(np.mean(r["seconds"]))
                van = float(np.mean(res["vanilla"]["seconds"]))
                entry = {"model": case["model"], "img_size": case["img_size"], "points_per_side": case["pps"],
                         "regime": regime, "implementation": name, "images": len(r["seconds"]),
                         "image_hw": list(images[0].shape[:2]), "seconds_per_image": s, "images_per_s": 1 / s,
                         "speedup_vs_vanilla": van / s, "candidates_per_image": float(np.mean(r["counts"])),
                         "counts": r["counts"], "matched_miou_vs_vanilla": float(np.mean(r["miou"])),
                         "exactly_equal_images": int(sum(r["exact"])), "thresholds": {k: v for k, v in kw.items()},
                         "pre_nms_masks_per_image": float(np.mean(r["survivors"])) if r["survivors"] else None,
                         "points_per_batch": 64 if name == "vanilla" else int(name.split("batch ")[1][:-1])}
                out.append(entry)
                print(f"[sam] {case['model']} {regime:6s} {name:18s} {s:7.3f} s/img  x{van / s:5.2f}  "
                      f"{entry['candidates_per_image']:.1f} cands  mIoU {entry['matched_miou_vs_vanilla']:.4f}  "
                      f"equal {entry['exactly_equal_images']}/{entry['images']}", flush=True)
            if partial is not None:
                partial.write_text(json.dumps(out, indent=1) + "\n")
        del base
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out


def small_regions_check(n: int = 24, hw: tuple[int, int] = (240, 320), min_area: int = 60) -> dict | None:
    """Holes/islands removal: semires' scipy version vs segment-anything's OpenCV one on blobby random
    masks (None when OpenCV is not installed)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return None
    from scipy import ndimage
    from segment_anything.utils.amg import remove_small_regions

    from semires.candidates.fast_amg import _remove_small_regions

    rng = np.random.default_rng(0)
    same = 0
    for _ in range(n):
        m = ndimage.gaussian_filter(rng.standard_normal(hw), 3) > 0.05
        want, _ = remove_small_regions(m, min_area, mode="holes")
        want, _ = remove_small_regions(want, min_area, mode="islands")
        got, _, _ = _remove_small_regions(torch.from_numpy(m[None]), torch.zeros(1, 4, dtype=torch.long), min_area, 0.7)
        same += bool(np.array_equal(want, got[0].numpy()))
    print(f"[sam] small-region removal: scipy == OpenCV on {same}/{n} masks", flush=True)
    return {"masks": n, "identical": same, "min_area": min_area}


# ------------------------------------------------------------------------------------------ embedded
def embedded_case(ix, out_dir: Path, label: str) -> dict:
    from semires import io
    from semires.candidates import CandidatesConfig, CandidateStore, build_generator, generate_shard, merge
    from semires.candidates.recall import store_recall

    gen = build_generator(CandidatesConfig())
    t_cpu = time.process_time()
    t_wall = time.perf_counter()
    generate_shard(ix, ix.image_ids(), 0, 1, out_dir, gen, progress=True)
    cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
    merge(out_dir, 1)
    stats = io.read_json(out_dir / "stats.json")
    rec = store_recall(CandidateStore(out_dir), ix, progress=False)
    n = len(ix.images)
    entry = {"dataset": label, "images": n, "cpu_seconds_per_image": cpu / n, "wall_seconds_per_image": wall / n,
             "images_per_s_cpu": n / cpu, "candidates_per_image": stats["candidates_per_image"]["mean"],
             "recall": rec, "stats": stats, "generator": gen.describe()}
    print(f"[embedded] {label}: {cpu / n * 1000:.0f} CPU-ms/img, {entry['candidates_per_image']:.0f} cands, "
          + ", ".join(f"{k} {v:.1f}" for k, v in rec.items() if k.startswith("recall")), flush=True)
    return entry


# -------------------------------------------------------------------------------------------- loader
def _train_step_ms(size: int, batch: int = 16, steps: int = 3) -> float:
    """CPU ms per sample of one training step (forward + CE + backward + AdamW) of the model that trains on
    RefShapes by default (params.yaml: lavt_tiny, channels 32-192, decoder 64, batch 16), at ``size`` px."""
    from semires.engine.optim import build_optimizer
    from semires.models import ModelConfig, build_model
    from semires.train.losses import segmentation_loss

    torch.manual_seed(0)
    model = build_model(ModelConfig(random_init=True, channels=[32, 64, 128, 192], decoder_channels=64)).train()
    opt = build_optimizer(model, 1e-3, 0.01)
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch, size, size) > 0.8).long()
    ids_t, att = torch.randint(1000, 30000, (batch, 20)), torch.ones(batch, 20, dtype=torch.long)

    def step():
        loss = segmentation_loss(model(x, ids_t, att), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    _, t = _timed(lambda: [step() for _ in range(steps)], torch.device("cpu"))
    return 1000 * t / (steps * batch)


LOADER_SIZES = (("128x128 (native)", None, 128), ("320x320 (resized)", (320, 320), 320))


def loader_case(store_dir: Path, ix, n: int) -> dict:
    from semires.candidates import CandidateStore

    ids = ix.image_ids()[:n]
    res = {"train_model": "lavt_tiny (channels 32/64/128/192, decoder 64, MiniLM-L6-shaped frozen text), batch 16, "
                          "fp32, 1 thread"}
    for label, size, train_px in LOADER_SIZES:
        cold = CandidateStore(store_dir, cache_size=0)
        _, c = _timed(lambda st=cold, sz=size: [st.masks(i, size=sz) for i in ids], torch.device("cpu"))
        warm = CandidateStore(store_dir, cache_size=len(ids), cache_mb=16384)  # everything fits: a true warm pass
        [warm.masks(i, size=size) for i in ids]
        _, w = _timed(lambda st=warm, sz=size: [st.masks(i, size=sz) for i in ids], torch.device("cpu"))
        res[label] = {"cold_ms_per_sample": 1000 * c / len(ids), "warm_ms_per_sample": 1000 * w / len(ids),
                      "train_step_ms_per_sample": _train_step_ms(train_px), "samples": len(ids)}
    print(f"[loader] {json.dumps(res)}", flush=True)
    return res


def calls_case(ix) -> dict:
    train = ix.image_ids("train")
    refs = ix.ref_ids("train")
    return {"train_images": len(train), "train_refs": len(refs), "train_expressions": len(ix.expressions("train")),
            "all_images": len(ix.images), "all_refs": len(ix.refs)}


# ---------------------------------------------------------------------------------------------- main
def _resized(ix, n: int, hw: tuple[int, int]) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(ix.load_image(i)).resize(hw[::-1], Image.BICUBIC)) for i in ix.image_ids()[:n]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sections", default="sam,embedded,loader,calls")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="where RefShapes and stores go (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per SAM regime before it stops adding images")
    ap.add_argument("--update", action="store_true", help="keep the other sections of an existing --out file")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    sections = set(args.sections.split(","))
    out_path = args.out or ROOT / "benchmarks" / "results" / ("candidates.json" if dev.type == "cpu"
                                                              else "candidates_gpu.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="candidates_bench."))
    raw: dict = {"device": str(dev)}
    rows: list = []
    by_section: dict[str, list] = {}
    default = _refshapes(work, "default", 24 if args.quick else None) if sections & {"embedded", "loader", "calls"} \
        else None

    if "sam" in sections:
        rows = by_section["sam"] = []
        small = _refshapes(work, "default", 8) if default is None else default
        if dev.type == "cuda":
            hw = (480, 640)
            cases = [{"model": "vit_h", "img_size": 1024, "pps": 32, "fast_ppb": [256, 1024], "n_images": 6,
                      "regimes": ["disc", "random"]}]
        else:
            hw = (240, 320)
            cases = [{"model": "tiny", "img_size": 256, "pps": 16 if args.quick else 32, "fast_ppb": [64],
                      "n_images": 2 if args.quick else 3, "regimes": ["disc", "random"]},
                     {"model": "vit_b", "img_size": 256 if args.quick else 512, "pps": 8 if args.quick else 16,
                      "fast_ppb": [64], "n_images": 1 if args.quick else 2, "regimes": ["disc", "random"],
                      "warmup": not args.quick}]
        images = _resized(small, max(c["n_images"] for c in cases), hw)
        raw["sam"] = sam_cases(dev, images, cases, args.budget, out_path.with_suffix(".partial.json"))
        for e in raw["sam"]:
            setting = (f"{e['model']} @{e['img_size']}px, {e['points_per_side']}² points, {e['regime']} masks, "
                       f"{e['image_hw'][1]}x{e['image_hw'][0]} images")
            rows.append([f"SAM AMG: {setting}", e["implementation"], f"{e['seconds_per_image']:.3f} s",
                         round(e["images_per_s"], 3), f"x{e['speedup_vs_vanilla']:.2f}",
                         round(e["candidates_per_image"], 1),
                         (f"matched mIoU {e['matched_miou_vs_vanilla']:.4f}, identical "
                          f"{e['exactly_equal_images']}/{e['images']}")])
        raw["small_regions"] = sr = small_regions_check()
        if sr:
            rows.append(["min_mask_region_area post-processing (holes + islands)", "scipy (fast) vs OpenCV (vanilla)",
                         "-", "-", "-", "-", f"identical on {sr['identical']}/{sr['masks']} random masks"])
    if "embedded" in sections:
        rows = by_section["embedded"] = []
        tiny = _refshapes(work, "tiny")
        raw["embedded"] = [embedded_case(tiny, work / "store-tiny", "RefShapes tiny (all 24 images, 64 px)"),
                           embedded_case(default, work / "store-default",
                                         f"RefShapes default ({len(default.images)} images, 128 px)")]
        for e in raw["embedded"]:
            r = e["recall"]
            rows.append([f"embedded stand-in on {e['dataset']}", "embedded (CPU)",
                         f"{e['cpu_seconds_per_image']:.3f} s", round(e["images_per_s_cpu"], 2), "-",
                         round(e["candidates_per_image"], 1),
                         "recall@0.5/0.75/0.8/0.9 = " + "/".join(f"{r[f'recall@{t}']:.1f}" for t in ("0.5", "0.75", "0.8", "0.9"))
                         + f" % of {r['objects']} objects"])
    if "loader" in sections:
        rows = by_section["loader"] = []
        store = work / "store-default"
        if not (store / "manifest.json").is_file():
            embedded_case(default, store, "RefShapes default")
        raw["loader"] = ld = loader_case(store, default, 64 if args.quick else 300)
        for label, _, px in LOADER_SIZES:
            step = ld[label]["train_step_ms_per_sample"]
            for kind in ("cold", "warm"):
                ms = ld[label][f"{kind}_ms_per_sample"]
                rows.append([f"CandidateStore.masks, {label}", f"{kind} ({'decode' if kind == 'cold' else 'LRU hit'})",
                             f"{ms:.2f} ms" if ms >= 0.01 else f"{1000 * ms:.1f} µs", int(1000 / ms), "-", "-",
                             f"{100 * ms / step:.2f}% of a lavt_tiny train step at {px} px ({step:.1f} ms/sample)"])
    if "calls" in sections:
        rows = by_section["calls"] = []
        raw["calls"] = c = calls_case(default)
        rows.append([f"SAM calls on RefShapes default train ({c['train_images']} images)", "one per image", "-", "-",
                     f"x{c['train_refs'] / c['train_images']:.2f} fewer than per ref", "-",
                     f"{c['train_images']} calls vs {c['train_refs']} per ref, {c['train_expressions']} per expression"])

    if args.update and out_path.is_file():
        old = json.loads(out_path.read_text())
        for k, v in old.get("rows_by_section", {}).items():
            by_section.setdefault(k, v)
        raw = {**old.get("raw", {}), **raw}
    rows = [r for k in ("sam", "embedded", "loader", "calls") for r in by_section.get(k, [])]
    if dev.type == "cuda":
        machine = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, 1 thread"
    doc = {"title": "Candidate generation: SAM AMG (vanilla vs fast), embedded stand-in, loader"
                    + (" (CUDA)" if dev.type == "cuda" else " (CPU)"),
           "columns": ["case", "variant", "time / image", "images/s", "speed-up", "candidates / image", "quality"],
           "rows": rows,
           "notes": ("SAM: random weights, real segment-anything model code; 'disc' = real encoder/decoder compute with "
                     "analytic disc mask logits and the published AMG thresholds; 'random' = the network's own noise "
                     "masks with pred-IoU threshold at the first image's median and stability off, equal for both. "
                     "Vanilla = segment_anything.SamAutomaticMaskGenerator (points_per_batch 64, binary masks). "
                     + ("CPU times are process CPU seconds, 1 torch thread. " if dev.type == "cpu"
                        else "CUDA times are wall clock after one warm-up image. ")
                     + "Recall = share of annotated objects with some candidate at IoU >= t."),
           "machine": machine, "date": dt.date.today().isoformat(), "raw": raw, "rows_by_section": by_section}
    out_path.write_text(json.dumps(doc, indent=1) + "\n")
    out_path.with_suffix(".partial.json").unlink(missing_ok=True)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
