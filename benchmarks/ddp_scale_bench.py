"""DDP on the RefCOCO-sized data: the same training as one process and as two ``torchrun`` processes.

    python benchmarks/ddp_scale_bench.py --index /tmp/scale/runs/semires_pipeline/scale_20000/data/index.json \
        --labeled /tmp/scale/runs/semires_pipeline/scale_20000/data/splits/0.01 --seeds 0 1

Each run is ``torchrun --nproc_per_node N -m semires train supervised`` (gloo on CPU, one torch
thread per process) with the same global batch (``--batch`` split evenly between the processes),
the same steps, learning rate and seed; the kept checkpoint is then scored on the first
``--val-expressions`` expressions of val by one process. With one process the result is what a
single worker gives; with two, what the data-parallel path gives. They agree when the gap between
them is within the spread between seeds. Writes ``benchmarks/results/ddp_scale_bench.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from supervised_bench import SMALL, train_ddp

from semires import io
from semires.data.index import RefIndex
from semires.data.splits import load_split
from semires.eval.evaluate import evaluate_model
from semires.hardware import cpu_summary, load_averages
from semires.models import ModelConfig
from semires.train.config import BurnInConfig

OUT = Path(__file__).resolve().parent / "results" / "ddp_scale_bench.json"


def score(index: RefIndex, checkpoint: Path, n: int) -> dict:
    """mIoU / oIoU of ``checkpoint`` on the first ``n`` val expressions (one process)."""
    import torch

    from semires.engine.checkpoint import load_model
    from semires.engine.dataset import ExpressionDataset
    from semires.engine.runtime import amp_dtype, configure
    from semires.models import load_tokenizer

    configure(torch.device("cpu"), False, 1)
    model, cfg, info = load_model(checkpoint, "cpu")
    ds = ExpressionDataset.from_split(index, load_tokenizer(cfg.text_encoder), int(info["image_size"]), cfg.max_tokens,
                                      split="val", cache_images=False)
    ds = ds.select(list(range(min(n, len(ds)))))
    res = evaluate_model(model, ds, dtype=amp_dtype(torch.device("cpu"), SMALL["amp"]), progress=False,
                         distributed=False)
    return {k: res.metrics[k] for k in ("mIoU", "oIoU", "n")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--labeled", type=Path, required=True, help="split folder (its labeled.txt)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_ddp_scale"))
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps (3 epochs of steps / 3)")
    ap.add_argument("--batch", type=int, default=16, help="global batch (split between the processes)")
    ap.add_argument("--val-expressions", type=int, default=2000)
    args = ap.parse_args()
    index = RefIndex.load(args.index)
    labeled = load_split(args.labeled).labeled
    raw = io.read_json(OUT)["raw"] if OUT.is_file() else []
    done = {(r["nproc"], r["seed"], r["index"]) for r in raw}
    for seed in args.seeds:
        for nproc in args.nproc:
            if (nproc, seed, str(args.index)) in done:
                continue
            cfg = BurnInConfig(**{**SMALL, "epochs": 3, "steps_per_epoch": args.steps // 3,
                                  "batch_size": args.batch // nproc, "seed": seed, "threads": 1,
                                  "val_max_expressions": 500})
            run = args.work / f"n{nproc}_s{seed}"
            before, t0 = load_averages(), time.time()
            metrics = train_ddp(args.index, labeled, run, ModelConfig(), cfg, nproc)
            wall = time.time() - t0
            val = score(index, run / "best.safetensors", args.val_expressions)
            raw.append({"nproc": nproc, "seed": seed, "index": str(args.index), "wall_s": round(wall, 1),
                        "train_s": metrics.get("train_s"), "val": val, "load": [before, load_averages()],
                        "images": len(index.images), "labeled_images": len(set(labeled)), "steps": args.steps,
                        "global_batch": args.batch})
            print(raw[-1], flush=True)
            io.write_json(OUT, render(raw))
    io.write_json(OUT, render(raw))
    print(OUT)


def render(raw: list[dict]) -> dict:
    rows = []
    for nproc in sorted({r["nproc"] for r in raw}):
        rs = [r for r in raw if r["nproc"] == nproc]
        m = [r["val"]["mIoU"] for r in rs]
        rows.append([nproc, len(rs), ", ".join(str(r["seed"]) for r in rs), round(statistics.mean(m), 2),
                     round(statistics.stdev(m), 2) if len(m) > 1 else None,
                     ", ".join(f"{v:.1f}" for v in m), round(statistics.mean(r["wall_s"] for r in rs))])
    r0 = raw[0]
    return {"title": "DDP on the RefCOCO-sized data: one process against two torchrun processes, same global batch",
            "columns": ["processes", "runs", "seeds", "val mIoU mean", "spread (sd)", "per seed", "wall s"],
            "rows": rows, "raw": raw, "machine": cpu_summary(), "date": time.strftime("%Y-%m-%d"),
            "notes": (f"RefShapes default at {r0['images']:,} images (scale_bench's data of that size, 128 px "
                      f"originals), {r0['labeled_images']} labeled images (its 1 % split), {r0['steps']} steps of "
                      f"global batch {r0['global_batch']} at 64 px (per process: the batch / processes), burn-in "
                      "settings otherwise (lr 2e-3, CE + Dice, bf16 autocast where native); torchrun --standalone, "
                      "gloo, one torch thread per process; each kept checkpoint scored by one process on the first "
                      f"{r0['val']['n']} val expressions. Wall = the torchrun command (start-up and text encoding "
                      "included).")}


if __name__ == "__main__":
    main()
