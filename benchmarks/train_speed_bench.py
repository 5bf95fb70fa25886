"""Training and evaluation throughput (images/s) of the RES model on this machine's CPU.

Measures, side by side in one run: lavt_tiny (the CPU default) at several input sizes, one
optimizer step = forward + class-weighted CE + Dice (the burn-in loss) + backward + AdamW step, under
the training's autocast (bf16 where the CPU computes it natively), on a batch of random images
with real RefShapes-like sentences (frozen MiniLM, features cached as in training); evaluation =
forward under no_grad. Also the one-off cost of encoding sentences with the frozen MiniLM.
Writes benchmarks/results/train_speed_bench.json.

    python benchmarks/train_speed_bench.py [--threads 1,2] [--steps 20] [--batch 32] [--amp bf16|off]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import torch
from supervised_bench import (  # run as a script, this folder is on sys.path
    FULL,
    FULL_MODEL,
    describe_context,
    describe_logits,
)

from semires import io
from semires.engine.optim import build_optimizer
from semires.engine.runtime import amp_dtype, autocast, memory_format
from semires.hardware import cpu_amp, load_averages
from semires.models import ModelConfig, build_model, load_tokenizer, tokenize
from semires.train.losses import category_loss, supervised_loss

SENTENCES = ["the small red star left of the ring", "the big blue thing in between the star and the green shape",
             "the highest green star", "the medium-sized object on the left of the red thing"]


def measure(model, size: int, batch: int, steps: int, ids, mask, dtype,
            channels_last: bool = False) -> tuple[float, float]:
    cpu = torch.device("cpu")
    model.to(memory_format=memory_format(channels_last))
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=memory_format(channels_last))
    y = (torch.rand(batch, size, size) > 0.8).long()
    aux = model.category_head is not None  # burn-in then adds the category loss (burn_in.category_weight)
    cats = torch.randint(0, 9, (batch, size, size))
    opt = build_optimizer(model, 1e-4, 0.01)
    model.train()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with autocast(cpu, dtype):
            out = model(x, ids, mask, return_categories=aux)
        logits = out[0] if aux else out
        loss = supervised_loss(logits, y, dice_weight=1.0)
        if aux:
            loss = loss + category_loss(out[1], cats)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train = batch * steps / (time.perf_counter() - t0)
    model.eval()
    with torch.no_grad(), autocast(cpu, dtype):
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            model(x, ids, mask)
    return train, batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="the 100%% supervised run's batch")
    ap.add_argument("--amp", default=cpu_amp(), choices=["bf16", "off"], help="autocast (default: as training here)")
    ap.add_argument("--sizes", default="64,96,128")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed_bench.json"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(threads[0])
    torch.manual_seed(0)
    load_before = load_averages()
    tok = load_tokenizer()
    ids, mask = tokenize(tok, [SENTENCES[i % len(SENTENCES)] for i in range(args.batch)], 20)
    cfg = ModelConfig()  # the library defaults: no category head, as params.yaml
    model = build_model(cfg)
    dtype = amp_dtype(torch.device("cpu"), args.amp)
    # one-off text cost: unique sentences through the frozen MiniLM (what training's warm-up pays,
    # under the same autocast)
    many = [f"{s} number {i}" for i in range(64) for s in SENTENCES]
    mids, mmask = tokenize(tok, many, 20)
    t0 = time.perf_counter()
    with autocast(torch.device("cpu"), dtype):
        model.text.warm_cache(mids, mmask)
    text_rate = len(many) / (time.perf_counter() - t0)
    # beside it the 100 % supervised run's model (the auxiliary category head and its loss, LAVT's
    # stride-4 logits, directional context) and layout, taken from that benchmark so the two cannot
    # drift apart
    full_cfg = ModelConfig(**FULL_MODEL)
    headed = build_model(full_cfg)
    headed.text = model.text  # shares the warmed sentence cache
    rows, raw = [], []
    for n in threads:
        torch.set_num_threads(n)
        for size in (int(s) for s in args.sizes.split(",")):
            for name, net, nhwc in (("lavt_tiny", model, False),
                                    ("lavt_tiny, 100 % run", headed, FULL.get("channels_last", False))):
                tr, ev = measure(net, size, args.batch, args.steps, ids, mask, dtype, nhwc)
                raw.append({"model": name, "threads": n, "image_size": size, "batch": args.batch, "amp": args.amp,
                            "train_images_per_s": tr, "eval_images_per_s": ev})
                rows.append([name, n, size, args.batch, args.amp, round(tr, 1), round(ev, 1)])
                print(rows[-1], flush=True)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    io.write_json(args.out, {
        "title": "RES model throughput on CPU (lavt_tiny, frozen MiniLM text encoder)",
        "columns": ["model", "threads", "image size", "batch", "autocast", "train images/s", "eval images/s"],
        "rows": rows, "raw": raw,
        "text_encoder_sentences_per_s": round(text_rate, 1), "trainable_params": n_params,
        "notes": (f"{args.steps} timed steps after 2 warm-up steps; train step = "
                  "forward + CE + Dice (+ the category loss with the head) + backward + AdamW (the default model: "
                  f"{cfg.fusion_heads} fusion heads, stride-{cfg.detail_stride} detail head; '100 % run' is the model "
                  f"of the 100 % supervised run: the auxiliary head on stages {full_cfg.category_stages} for 8 "
                  f"categories, {describe_logits(FULL_MODEL)}, {describe_context(FULL_MODEL)}, "
                  f"channels-last: {FULL.get('channels_last', False)}; the two "
                  "alternate per setting). "
                  "Frozen MiniLM encodes "
                  f"{text_rate:.0f} sentences/s once (cached after; autocast {args.amp}), measured with {threads[0]} thread(s). "
                  "Load average "
                  f"{load_before} before, {load_averages()} after (the benchmark itself keeps one or two cores busy)."),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": dt.date.today().isoformat()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
