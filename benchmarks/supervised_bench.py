"""Supervised-only RES on RefShapes (default preset): val/testA/testB scores vs labeled fraction.

The fully supervised run (100% of train) is the reference the README quotes with its wall time;
1%, 5% and 10% are the "supervised only" baselines SemiRES improves on. Every run uses the CPU
default model (lavt_tiny: frozen MiniLM + small conv backbone) and the settings below; small
labeled sets get a fixed step budget (``steps_per_epoch``) instead of one pass per epoch.
Wall time includes everything the stage does (model build, sentence encoding, training,
per-epoch validation, checkpoints), not the dataset generation.

    python benchmarks/supervised_bench.py [--ratios 1.0,0.1,0.05,0.01] [--threads 2]

Writes benchmarks/results/supervised_bench.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from semires import io
from semires.data.index import RefIndex, build_index
from semires.data.splits import make_splits, ratio_name
from semires.eval.evaluate import evaluate_checkpoint
from semires.models import ModelConfig
from semires.tracking import TrackingConfig
from semires.train.config import BurnInConfig
from semires.train.supervised import resolve_labeled, train_supervised

MODEL = ModelConfig()  # the CPU default
FULL = dict(epochs=3, batch_size=16, image_size=64, lr=2e-3, warmup_steps=50, device="cpu", checkpoint_every=200,
            log_every=50)  # = the BurnInConfig defaults, spelled out
SMALL = dict(FULL, epochs=6, steps_per_epoch=150)  # 900 steps for 1% / 5% / 10%


def _load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def prepare(work: Path) -> tuple[Path, Path]:
    from semires.data.synthetic import generate

    refer = work / "refshapes"
    if not (refer / "refshapes.json").is_file():
        generate(refer, preset="default", seed=0, progress=True)
    index = work / "index.json"
    if not index.is_file():
        build_index(refer, refer / "images", index, dataset="refshapes", progress=True)
    return refer, index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_supervised_bench"))
    ap.add_argument("--ratios", default="1.0,0.1,0.05,0.01")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 beats 2 on a loaded 2-core machine)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "supervised_bench.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ratios = [float(r) for r in args.ratios.split(",")]
    _, index_path = prepare(args.work)
    index = RefIndex.load(index_path)
    splits = make_splits(index, ratios, seed=0, out_dir=args.work / "splits")
    rows, raw, loads = [], [], []
    for ratio in ratios:
        name = ratio_name(ratio)
        cfg = BurnInConfig(**(FULL if ratio >= 1.0 else SMALL), threads=args.threads)
        run = args.work / "runs" / name
        shutil.rmtree(run, ignore_errors=True)  # a finished run would be skipped, and its wall time lost
        labeled = resolve_labeled(splits[ratio])
        load0 = _load()
        t0 = time.perf_counter()
        res = train_supervised(index, labeled, run, MODEL, cfg, TrackingConfig(enabled=False), progress=True)
        wall = time.perf_counter() - t0
        ev = evaluate_checkpoint(index_path, run / "best.safetensors", run / "eval", progress=True)["splits"]
        loads.append(f"{name}: {load0} -> {_load()}")
        best = res["best"]
        rows.append([f"{100 * ratio:g}%", len(labeled), res["train_expressions"], res["steps"],
                     round(ev["val"]["mIoU"], 1), round(ev["val"]["oIoU"], 1), round(ev["val"]["prec@0.5"], 1),
                     round(ev["testA"]["mIoU"], 1), round(ev["testB"]["mIoU"], 1), round(wall / 60, 1)])
        raw.append({"ratio": ratio, "labeled_images": len(labeled), "train_expressions": res["train_expressions"],
                    "steps": res["steps"], "best_epoch": res["best_epoch"], "val_during_training": best,
                    "eval": ev, "history": res["history"], "wall_s": round(wall, 1),
                    "train_images_per_s": res["train_images_per_s"], "config": cfg.model_dump(mode="json")})
        print(rows[-1], flush=True)
        io.write_json(args.out, _doc(rows, raw, loads, args.threads))
    print(f"wrote {args.out}")


def _doc(rows, raw, loads, threads) -> dict:
    full = next((r for r in raw if r["ratio"] >= 1.0), None)
    verdict = "" if full is None else (
        f"Target (>= 70 val mIoU within 10 min): {'met' if full['eval']['val']['mIoU'] >= 70 and full['wall_s'] <= 600 else 'NOT met'}"
        f" - 100% reached {full['eval']['val']['mIoU']:.1f} in {full['wall_s'] / 60:.1f} min. ")
    return {
        "title": "Supervised-only RES on RefShapes (CPU default model) by labeled fraction",
        "columns": ["labeled", "images", "expressions", "steps", "val mIoU", "val oIoU", "val prec@0.5",
                    "testA mIoU", "testB mIoU", "wall (min)"],
        "rows": rows, "raw": raw,
        "notes": (verdict + f"lavt_tiny (frozen MiniLM-L6 + conv backbone), {FULL['image_size']} px input, batch "
                  f"{FULL['batch_size']}, AdamW lr {FULL['lr']} poly 0.9, CE [0.9, 1.1]; 100%: {FULL['epochs']} "
                  f"epochs; 1/5/10%: {SMALL['epochs']} x {SMALL['steps_per_epoch']} steps. Best epoch by val oIoU; "
                  f"scores from `semires evaluate` on every expression. {threads} torch threads. Wall = the whole "
                  "training stage. The machine was shared with other engineers' jobs (load average per run: "
                  + "; ".join(loads) + "), so wall times are upper bounds."),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": dt.date.today().isoformat()}


if __name__ == "__main__":
    main()
