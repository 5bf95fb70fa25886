"""Which model change learns faster per epoch? Variants of the CPU default model side by side (one GPU).

The issue-4 target is a val mIoU reached on 2 CPU cores in 10 minutes, that is about 6 epochs at 96 px.
Trying a model change on the CPU costs one 10-minute run each; a GPU trains the same schedule in under
two minutes, and several at once. This runs every variant below with the CPU run's exact schedule
(batch 32, lr 4e-3, poly, CE + Dice, 6 epochs, val mIoU after every epoch) as concurrent
``benchmarks/gpu_supervised.py`` processes on one GPU, then gathers their curves into one JSON. What a
variant costs on the CPU is measured separately (``benchmarks/train_speed_bench.py``); a change only
helps the CPU target if it scores more per unit of *CPU* time.

    python benchmarks/gpu_sweep.py [--variants default,no_detail,...] [--epochs 6] [--text-encoder DIR]

Writes ``results/gpu_model_sweep.json`` (``--out``); each variant's own JSON and log go beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cat(stages: list[int], weight: float, *extra: str) -> list[str]:
    """Arguments for the auxiliary category head (RefShapes' 8 shapes) on ``stages`` at loss ``weight``."""
    return ["--model", "categories=8", "--model", f"category_stages={stages}", "--burn-in",
            f"category_weight={weight:g}", *extra]


# name -> (what it changes, gpu_supervised.py arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "default": ("the model's defaults (96 px, stride-2 detail head, no category head)", []),
    "default_seed1": ("the model's defaults, another seed (weights and batch order): the spread between runs",
                      ["--seed", "1"]),
    "no_detail": ("LAVT's stride-4 logits, no detail head (1.3-1.5x cheaper step)", ["--model", "detail_stride=4"]),
    "no_detail_128": ("stride-4 logits at 128 px (more pixels per object, no detail head)",
                      ["--model", "detail_stride=4", "--sizes", "128"]),
    "wide": ("stages 24-48-96-192 channels", ["--model", "channels=[24,48,96,192]"]),
    "deep_low": ("more blocks where maps are small: depths 1-2-4-2, 96/192 channels at strides 16/32",
                 ["--model", "depths=[1,2,4,2]", "--model", "channels=[16,32,96,192]"]),
    "stride4_capacity": ("more capacity at stride 4: 24 channels, 2 blocks",
                         ["--model", "channels=[24,32,64,128]", "--model", "depths=[2,2,2,1]"]),
    "decoder16": ("a 16-channel decoder (cheaper head)", ["--model", "decoder_channels=16"]),
    "heads8_lr6": ("8 fusion heads, lr 6e-3", ["--model", "fusion_heads=8", "--lr", "6e-3"]),
    "text_lexical": ("word features from MiniLM's embedding layer (no context)", ["--model", "text_layers=[0]"]),
    "text_lexical_last": ("mean of MiniLM's embedding layer and last layer", ["--model", "text_layers=[0,-1]"]),
    "text_all_layers": ("mean of all 7 MiniLM hidden states", ["--model", "text_layers=[0,1,2,3,4,5,6]"]),
    "cat_s01_w05": ("auxiliary category segmentation from stages 0-1 (pre-fusion), weight 0.5", _cat([0, 1], 0.5)),
    "cat_s01_w1": ("auxiliary category segmentation from stages 0-1 (pre-fusion), weight 1", _cat([0, 1], 1)),
    "cat_s01_w2": ("auxiliary category segmentation from stages 0-1 (pre-fusion), weight 2", _cat([0, 1], 2)),
    "cat_s0_w1": ("auxiliary category segmentation from stage 0 (stride 4) alone, weight 1", _cat([0], 1)),
    "cat_s012_w1": ("auxiliary category segmentation from stages 0-2, weight 1", _cat([0, 1, 2], 1)),
    "cat_s01_w1_seed1": ("auxiliary category segmentation from stages 0-1, weight 1, seed 1",
                         _cat([0, 1], 1, "--seed", "1")),
    "cat_s012_w2": ("auxiliary category segmentation from stages 0-2, weight 2", _cat([0, 1, 2], 2)),
    "cat_s012_w2_seed1": ("auxiliary category segmentation from stages 0-2, weight 2, seed 1",
                          _cat([0, 1, 2], 2, "--seed", "1")),
    "cat_s012_w4": ("auxiliary category segmentation from stages 0-2, weight 4", _cat([0, 1, 2], 4)),
    "cat_s0123_w2": ("auxiliary category segmentation from all four stages, weight 2", _cat([0, 1, 2, 3], 2)),
    "cat_s012_w2_lex": ("auxiliary category segmentation from stages 0-2, weight 2, with text_layers [0, -1]",
                        _cat([0, 1, 2], 2, "--model", "text_layers=[0,-1]")),
    "cat_lex": ("auxiliary category segmentation (stages 0-1, weight 1) with text_layers [0, -1]",
                _cat([0, 1], 1, "--model", "text_layers=[0,-1]")),
    "cat_deep_low": ("auxiliary category segmentation (stages 0-1, weight 1) with deep_low's stages",
                     _cat([0, 1], 1, "--model", "depths=[1,2,4,2]", "--model", "channels=[16,32,96,192]")),
    "cat_s012_w1_seed1": ("auxiliary category segmentation from stages 0-2, weight 1, seed 1",
                          _cat([0, 1, 2], 1, "--seed", "1")),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2, help="data loader processes per variant")
    ap.add_argument("--val-max", type=int, default=1000)
    ap.add_argument("--text-encoder", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_gpu_sweep"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_model_sweep.json")
    ap.add_argument("--merge", type=Path, default=None,
                    help="train nothing: add the variants of this gpu_model_sweep.json (one that came back from "
                         "a GPU call) to --out and rewrite its table")
    args = ap.parse_args(argv)
    if args.merge:
        write(args, [], 0.0, json.loads(args.merge.read_text()))
        return 0
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    from semires.data.synthetic import prepare

    prepare(args.work, args.preset, progress=False)  # once, before the variants share the folder
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    common = ["--epochs", str(args.epochs), "--workers", str(args.workers), "--val-max", str(args.val_max),
              "--device", args.device, "--preset", args.preset, "--work", str(args.work)]
    if args.text_encoder:
        common += ["--text-encoder", args.text_encoder]
    t0 = time.perf_counter()
    procs = {}
    for name in names:
        log = open(out_dir / f"sweep_{name}.log", "w")  # noqa: SIM115 - closed when the process ends
        cmd = [sys.executable, str(HERE / "gpu_supervised.py"), *common, *VARIANTS[name][1],
               "--out", str(out_dir / f"sweep_{name}.json")]
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    failed = []
    for name, (proc, log) in procs.items():
        if proc.wait():
            failed.append(name)
        log.close()
    wall = time.perf_counter() - t0
    write(args, names, wall)
    if failed:
        print(f"failed: {failed} (see their sweep_<name>.log)", file=sys.stderr)
    return 1 if failed else 0


def write(args, names: list[str], wall: float, merge: dict | None = None) -> Path:
    """Gather the variants' JSONs (those that finished) into one table. Variants of earlier batches
    already in ``args.out`` are kept (a rerun of a variant replaces its row), so a sweep can run in
    several GPU calls and still make one table; ``merge`` (another such table) adds its variants."""
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    raw = dict(old.get("raw", {}))
    machine = old.get("machine")
    if merge:
        raw.update(merge.get("raw", {}))
        machine = merge.get("machine") or machine
    batch = {"variants": names, "wall_s": round(wall, 1)}
    for name in names:
        path = args.out.parent / f"sweep_{name}.json"
        if path.is_file():
            doc = json.loads(path.read_text())
            machine = doc["machine"]
            raw[name] = {**doc["raw"][0], "batch": batch}
    rows = []
    for name in [v for v in VARIANTS if v in raw]:
        run = raw[name]
        curve = [round(h["mIoU"], 1) for h in run["history"]]
        ev = run["eval"]
        rows.append([name, VARIANTS[name][0], run["image_size"], ", ".join(f"{c:.1f}" for c in curve),
                     round(ev["val"]["mIoU"], 1), round(ev["testA"]["mIoU"], 1), round(ev["testB"]["mIoU"], 1),
                     len(run["batch"]["variants"]), round(run["train_s"] / 60, 1)])
    doc = {"title": "Model variants at the CPU run's schedule, side by side on one GPU",
           "columns": ["variant", "change", "input px", f"val mIoU per epoch ({args.val_max} expressions)",
                       "best val mIoU (all)", "testA mIoU", "testB mIoU", "runs at once", "GPU min"],
           "rows": rows, "raw": raw,
           "notes": (f"Each variant: lavt_tiny defaults except the change, {args.epochs} epochs, batch 32, lr 4e-3 "
                     f"unless named, seed 0 unless named, AdamW poly 0.9, CE + Dice, bf16 autocast, RefShapes "
                     f"'{args.preset}' 100% of train. Variants ran in batches of concurrent processes on one GPU "
                     "('runs at once'), so GPU minutes are not a variant's own cost. Final scores are the best "
                     "epoch (val oIoU) on every expression."),
           "machine": machine or "none finished", "date": dt.date.today().isoformat()}
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return args.out


if __name__ == "__main__":
    raise SystemExit(main())
