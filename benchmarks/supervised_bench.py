"""Supervised-only RES on RefShapes (default preset): val/testA/testB scores vs labeled fraction.

The fully supervised run (100% of train) is the reference the README quotes with its wall time;
1%, 5% and 10% are the "supervised only" baselines SemiRES improves on. Every run uses the CPU
default model (lavt_tiny: frozen MiniLM + small conv backbone) and the settings below; small
labeled sets get a fixed step budget (``steps_per_epoch``) instead of one pass per epoch.
Wall time includes everything the stage does (model build, sentence encoding, training,
per-epoch validation, checkpoints), not the dataset generation.

    python benchmarks/supervised_bench.py [--ratios 1.0,0.1,0.05,0.01] [--threads 2] [--nproc 2] [--full-epochs 3]
        [--seed 1] [--model KEY=VALUE ...]   # model overrides, VALUE as JSON: --model 'text_layers=[0,-1]'
        [--burn-in KEY=VALUE ...]            # burn_in overrides in every run: --burn-in dice_weight=0
    python benchmarks/supervised_bench.py --render --out FILE   # rewrite FILE's rows and notes from its raw

The 100% run trains with the auxiliary category head, directional context and the subpixel head
(``FULL`` / ``FULL_MODEL`` below); the 1-10% runs without them.

On the 2-core AMD EPYC one process with two torch threads trains 1.3-1.6x as fast as one thread
(batch 32, 64 px); ``--nproc 2`` (DDP over two one-thread CPU processes, torchrun + gloo, the
per-process batch = the global batch / nproc) gave 1.2x and BatchNorm statistics over half a batch.

Writes benchmarks/results/supervised_bench.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import torch

from semires import io
from semires.config import parse_overrides
from semires.data.index import RefIndex
from semires.data.splits import make_splits, ratio_name
from semires.data.synthetic import prepare
from semires.eval.evaluate import evaluate_checkpoint
from semires.hardware import cpu_amp, describe, load_averages
from semires.models import ModelConfig
from semires.tracking import TrackingConfig
from semires.train.config import BurnInConfig
from semires.train.supervised import resolve_labeled, train_supervised

# 1% / 5% / 10%: 6 x 150 steps of batch 16 at 64 px (the demo's model; burn_in's CE + Dice); bf16 autocast
# where the CPU computes bf16 natively, float32 elsewhere
SMALL = {"epochs": 6, "steps_per_epoch": 150, "batch_size": 16, "image_size": 64, "lr": 2e-3, "warmup_steps": 50,
         "device": "cpu", "checkpoint_every": 200, "log_every": 50, "amp": cpu_amp()}
# 100%: 7 epochs of batch 32 at lr 4e-3 and RefShapes' native 128 px, the auxiliary category loss (weight 1),
# half the Dice weight, channels-last, best epoch picked on 500 val expressions (the final scores use all of
# val). Why each setting: docs/model.md ("The 100 % supervised configuration"); the runs that chose them:
# the supervised_bench_seeds table (benchmarks/README.md) and docs/experiments.md.
FULL = dict(SMALL, epochs=7, steps_per_epoch=None, batch_size=32, lr=4e-3, image_size=128, category_weight=1.0,
            dice_weight=0.5, val_max_expressions=500, channels_last=True)
# the model of the 100% run: RefShapes' 8 shape categories for the category head, LAVT's stride-4 logits with
# the subpixel head, directional context (32 channels) after the stride-8 and stride-16 fusions
FULL_MODEL = {"categories": 8, "detail_stride": 4, "context_stages": [1, 2], "context_channels": 32,
              "subpixel_channels": 16}


def train_ddp(index_path: Path, labeled, run: Path, model: ModelConfig, cfg: BurnInConfig, nproc: int) -> dict:
    """The same training through ``torchrun -m semires train supervised`` with ``nproc`` gloo processes."""
    import subprocess
    import sys

    import yaml

    run.parent.mkdir(parents=True, exist_ok=True)
    params = run.parent / f"{run.name}.params.yaml"
    params.write_text(yaml.safe_dump({"model": model.model_dump(mode="json"), "burn_in": cfg.model_dump(mode="json"),
                                      "mlflow": {"enabled": False}}))
    arg = "all"
    if labeled is not None:
        arg = str(run.parent / f"{run.name}.labeled.txt")
        Path(arg).write_text("".join(f"{i}\n" for i in labeled))
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "semires", "train", "supervised",
                    "--index", str(index_path), "--labeled", arg, "--out", str(run), "--params", str(params),
                    "--no-progress"], check=True, env={**os.environ, "OMP_NUM_THREADS": str(cfg.threads or 1)})
    return io.read_json(run / "metrics.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_supervised_bench"))
    ap.add_argument("--ratios", default="1.0,0.1,0.05,0.01",
                    help="ratios to (re)run; the other ratios' results already in --out are kept")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per process")
    ap.add_argument("--nproc", type=int, default=1, help="DDP processes (torchrun); 1 = in this process")
    ap.add_argument("--full-epochs", type=int, default=FULL["epochs"],
                    help="epochs of the 100%% run")
    ap.add_argument("--full-image-size", type=int, default=FULL["image_size"], help="input side of the 100%% run")
    ap.add_argument("--full-batch", type=int, default=FULL["batch_size"], help="global batch of the 100%% run")
    ap.add_argument("--full-lr", type=float, default=FULL["lr"], help="peak learning rate of the 100%% run")
    ap.add_argument("--seed", type=int, default=0,
                    help="initial weights and batch order (the labeled splits stay those of seed 0)")
    ap.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                    help="a ModelConfig field to override, VALUE parsed as JSON (repeatable)")
    ap.add_argument("--burn-in", action="append", default=[], metavar="KEY=VALUE",
                    help="a BurnInConfig field to override in every run, VALUE parsed as JSON (repeatable)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "supervised_bench.json")
    ap.add_argument("--render", action="store_true",
                    help="train nothing: rewrite --out's rows and notes from its raw results (after a change to "
                         "how they are written); its machine and date stay")
    args = ap.parse_args()
    if args.render:
        old = io.read_json(args.out)
        model = ModelConfig(**{k: v for k, v in (old["raw"][0].get("model") or {}).items() if k in ModelConfig.model_fields})
        io.write_json(args.out, {**_doc(old["raw"], model), "machine": old["machine"], "date": old["date"]})
        return
    model_overrides = parse_overrides(ModelConfig, args.model)  # the CPU default unless overridden
    burn_overrides = parse_overrides(BurnInConfig, args.burn_in)
    torch.set_num_threads(args.threads)
    ratios = [float(r) for r in args.ratios.split(",")]
    _, index_path = prepare(args.work)  # (re)drawn when the generator changed since the last run
    index = RefIndex.load(index_path)
    splits = make_splits(index, ratios, seed=0, out_dir=args.work / "splits")
    kept = io.read_json(args.out)["raw"] if args.out.is_file() else []
    raw = [r for r in kept if r["ratio"] not in ratios]
    for ratio in ratios:
        name = ratio_name(ratio)
        base = (dict(FULL, epochs=args.full_epochs, image_size=args.full_image_size, batch_size=args.full_batch,
                     lr=args.full_lr) if ratio >= 1.0 else SMALL)
        cfg = BurnInConfig(**{**base, "batch_size": base["batch_size"] // args.nproc, "threads": args.threads,
                              "seed": args.seed, **burn_overrides})
        model = ModelConfig(**{**(FULL_MODEL if ratio >= 1.0 else {}), **model_overrides})
        run = args.work / "runs" / name
        shutil.rmtree(run, ignore_errors=True)  # a finished run would be skipped, and its wall time lost
        labeled = resolve_labeled(splits[ratio])
        load0 = load_averages()
        t0 = time.perf_counter()
        if args.nproc == 1:
            res = train_supervised(index, labeled, run, model, cfg, TrackingConfig(enabled=False), progress=True)
        else:
            res = train_ddp(index_path, None if ratio >= 1.0 else labeled, run, model, cfg, args.nproc)
        wall = time.perf_counter() - t0
        ev = evaluate_checkpoint(index_path, run / "best.safetensors", run / "eval", progress=True)["splits"]
        raw.append({"ratio": ratio, "labeled_images": len(labeled), "train_expressions": res["train_expressions"],
                    "steps": res["steps"], "best_epoch": res["best_epoch"], "val_during_training": res["best"],
                    "eval": ev, "history": res["history"], "wall_s": round(wall, 1), "nproc": args.nproc,
                    "threads": args.threads, "load": f"{load0} -> {load_averages()}",
                    "train_images_per_s": res["train_images_per_s"], "config": cfg.model_dump(mode="json"),
                    "model": model.model_dump(mode="json")})
        raw.sort(key=lambda r: -r["ratio"])
        print(_row(raw[[r["ratio"] for r in raw].index(ratio)]), flush=True)
        io.write_json(args.out, _doc(raw, model))
    print(f"wrote {args.out}")


def _row(r: dict) -> list:
    ev = r["eval"]
    return [f"{100 * r['ratio']:g}%", r["labeled_images"], r["train_expressions"], r["config"]["image_size"], r["steps"],
            r["config"]["epochs"] if r["config"].get("steps_per_epoch") is None else
            f"{r['config']['epochs']} x {r['config']['steps_per_epoch']}",
            f"{r.get('nproc', 1)} x {r.get('threads', 1)}", round(ev["val"]["mIoU"], 1), round(ev["val"]["oIoU"], 1),
            round(ev["val"]["prec@0.5"], 1), round(ev["testA"]["mIoU"], 1), round(ev["testB"]["mIoU"], 1),
            round(r["wall_s"] / 60, 1)]


def _doc(raw: list[dict], model: ModelConfig) -> dict:
    full = next((r for r in raw if r["ratio"] >= 1.0), None)
    verdict = "" if full is None else (
        f"Target (>= 70 val mIoU within 10 min): {'met' if full['eval']['val']['mIoU'] >= 70 and full['wall_s'] <= 600 else 'NOT met'}"
        f" - 100% reached {full['eval']['val']['mIoU']:.1f} in {full['wall_s'] / 60:.1f} min. ")
    return {
        "title": "Supervised-only RES on RefShapes (CPU default model) by labeled fraction",
        "columns": ["labeled", "images", "expressions", "input px", "steps", "epochs", "processes x threads", "val mIoU",
                    "val oIoU", "val prec@0.5", "testA mIoU", "testB mIoU", "wall (min)"],
        "rows": [_row(r) for r in raw], "raw": raw,
        "notes": (verdict + f"lavt_tiny (frozen MiniLM-L6 + conv backbone, {model.fusion_heads} fusion heads, "
                  f"{_logits(raw)[2:]}{_fusion(raw)}{_category_head(raw)}{_context(raw)}{_text_layers(raw)}{_seeds(raw)}{_early(raw)}"
                  f"{_layout(raw)}{_loss_grid(raw)}), "
                  f"input px per run as listed, AdamW poly 0.9, {_loss(raw)}, autocast {SMALL['amp']}; "
                  "global batch and lr per run: "
                  + "; ".join(f"{100 * r['ratio']:g}%: batch {r['config']['batch_size'] * r.get('nproc', 1)}, lr "
                              f"{r['config']['lr']}" for r in raw) + ". "
                  f"Small labeled sets get {SMALL['epochs']} x {SMALL['steps_per_epoch']} steps. Best epoch by val oIoU"
                  f"{_val_subset(raw)}; scores from "
                  "`semires evaluate` on every expression. Several processes = DDP over CPU processes (torchrun, "
                  "gloo; the batch split between them, BatchNorm statistics per process). Wall = the whole training "
                  "stage (process start-up included). Load average per run: "
                  + "; ".join(f"{100 * r['ratio']:g}%: {r.get('load', 'n/a')}" for r in raw) + "."),
        "machine": describe("cpu", max((r.get("threads", 1) for r in raw), default=1)),
        "date": dt.date.today().isoformat()}


def _seeds(raw: list[dict]) -> str:
    """The runs' seeds (initial weights and batch order) when any is not 0."""
    seeds = {f"{100 * r['ratio']:g}%": r["config"].get("seed", 0) for r in raw}
    return "" if not any(seeds.values()) else "; seed " + ", ".join(f"{s} in {k}" for k, s in seeds.items())


def _rows_by(raw: list[dict], key) -> dict:
    """The rows' ratios ("100%", ...) grouped by ``key(row)``, in first-seen order."""
    groups: dict = {}
    for r in raw:
        groups.setdefault(key(r), []).append(f"{100 * r['ratio']:g}%")
    return groups


def _per_row(raw: list[dict], one) -> str:
    """``one(row)`` for the rows, said once when all rows agree, else with the rows each applies to."""
    kinds = _rows_by(raw, one)
    if len(kinds) <= 1:
        return "".join(f", {k}" for k in kinds)
    return "; " + "; ".join(f"{k} in {', '.join(rows)}" for k, rows in kinds.items())


def _loss(raw: list[dict]) -> str:
    """The referring loss, with the Dice weight per row when the rows differ."""
    weights = _rows_by(raw, lambda r: r["config"].get("dice_weight", 1.0))
    if len(weights) <= 1:
        return f"CE [0.9, 1.1] + {next(iter(weights), BurnInConfig().dice_weight):g} x Dice"
    return "CE [0.9, 1.1] + Dice x " + " / ".join(f"{w:g} ({', '.join(rows)})" for w, rows in weights.items())


def _category_head(raw: list[dict]) -> str:
    """How the rows used the auxiliary category loss (rows measured before it existed had none)."""
    def one(r: dict) -> str:
        m, c = r.get("model") or {}, r["config"]
        if m.get("categories") and c.get("category_weight"):
            return f"auxiliary category loss from stages {m['category_stages']} x {c['category_weight']:g}"
        return "no auxiliary category loss"

    return _per_row(raw, one)


def describe_logits(m: dict) -> str:
    """A model config's (dict) logit head in words (configs stored before the field existed had the
    stride-2 detail head)."""
    stride = m.get("detail_stride", 2)
    if m.get("subpixel_channels"):
        return f"stride-4 logits with a {m['subpixel_channels']}-channel subpixel head"
    return "stride-4 logits (LAVT, no detail head)" if stride == 4 else f"stride-{stride} detail head"


def describe_context(m: dict) -> str:
    """A model config's (dict) directional context in words (configs stored before it existed had none)."""
    stages, channels = m.get("context_stages") or [], m.get("context_channels", 16)
    if not stages:
        return "no directional context"
    return f"directional context after stages {stages}" + (f" ({channels} channels)" if channels != 16 else "")


def _logits(raw: list[dict]) -> str:
    """Each row's logit head."""
    return _per_row(raw, lambda r: describe_logits(r.get("model") or {}))


def _fusion(raw: list[dict]) -> str:
    """Which rows left stages without pixel-word fusion (model.fusion_stages; rows without the field fused at
    every stage)."""
    rows = [(f"{100 * r['ratio']:g}%", r["model"]["fusion_stages"]) for r in raw
            if (r.get("model") or {}).get("fusion_stages") is not None]
    return "".join(f"; pixel-word fusion at stages {stages} alone in {k}" for k, stages in rows)


def _context(raw: list[dict]) -> str:
    """Which rows had directional context after their fusion."""
    return _per_row(raw, lambda r: describe_context(r.get("model") or {}))


def _layout(raw: list[dict]) -> str:
    """Which rows trained channels-last."""
    rows = [f"{100 * r['ratio']:g}%" for r in raw if r["config"].get("channels_last")]
    return f"; channels-last in {', '.join(rows)}" if rows else ""


def _loss_grid(raw: list[dict]) -> str:
    """Which rows scored the referring loss at the logit grid (burn_in.loss_resolution: logits, an option the
    code no longer has; older results files carry it, docs/experiments.md)."""
    rows = [f"{100 * r['ratio']:g}%" for r in raw if r["config"].get("loss_resolution") == "logits"]
    return f"; referring loss at the logit grid in {', '.join(rows)}" if rows else ""


def _val_subset(raw: list[dict]) -> str:
    """Which rows picked their best epoch on a subset of val."""
    rows = [(f"{100 * r['ratio']:g}%", r["config"]["val_max_expressions"]) for r in raw
            if r["config"].get("val_max_expressions")]
    return "".join(f" (on {n} val expressions in {k})" for k, n in rows)


def _early(raw: list[dict]) -> str:
    """Which rows trained their first epochs at a smaller side (progressive resizing)."""
    return "".join(f"; {100 * r['ratio']:g}%: the first {r['config']['early_epochs']} epochs at "
                   f"{r['config']['early_image_size']} px, then {r['config']['image_size']} px"
                   for r in raw if r["config"].get("early_image_size") and r["config"].get("early_epochs"))


def _text_layers(raw: list[dict]) -> str:
    """Which rows took their word features from other text-encoder layers than the last."""
    layered = [(f"{100 * r['ratio']:g}%", r["model"]["text_layers"]) for r in raw
               if (r.get("model") or {}).get("text_layers") is not None]
    if not layered:
        return ""
    return (f"; word features: mean of MiniLM hidden states {layered[0][1]} in {', '.join(k for k, _ in layered)}, "
            "the last layer otherwise")


if __name__ == "__main__":
    main()
