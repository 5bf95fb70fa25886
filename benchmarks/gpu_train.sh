#!/usr/bin/env bash
# RES model training / evaluation throughput on one CUDA GPU (H100 / H200), bf16 autocast.
#
# Models (random weights, built from configs in code: nothing is downloaded or read from disk):
#   lavt_tiny  - the CPU default (small conv backbone, MiniLM-L6-shaped frozen text encoder, cached)
#   lavt_swin  - the paper's shape: Swin-T backbone + BERT-base text encoder trained jointly (LAVT)
# For each: images/s of a training step (forward + the model's loss + backward + AdamW) and of
# evaluation (no_grad forward), peak GPU memory. lavt_tiny uses the CPU defaults (4 fusion heads,
# stride-2 detail head, CE + Dice); lavt_swin the paper's settings from infra/README.md (1 head,
# stride-4 logits, CE only). Finishes in well under 3 minutes.
#
# Usage, from the repository root on the GPU machine:
#   bash benchmarks/gpu_train.sh            # writes $OUT/gpu_train.json (or benchmarks/results/)
# The GPU image has torch/transformers/pyyaml but no pydantic, which semires' typed config needs.
# Fetch its wheels once on the development machine (/.whl/ is git-ignored) and carry .whl along:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
# They are installed into /tmp/site when pydantic is missing. CPU dry run: GPU_TRAIN_SMOKE=1 bash benchmarks/gpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh pydantic
timeout 170 "$PY" - "$OUT_DIR" <<'PY'
import datetime as dt
import json
import sys
import time

import torch

from semires.models import ModelConfig, build_model
from semires.train.config import BurnInConfig
from semires.train.losses import supervised_loss
from semires.engine.optim import build_optimizer, build_scheduler

import os

SMOKE = os.environ.get("GPU_TRAIN_SMOKE") == "1"  # CPU dry run of this script with tiny sizes
assert SMOKE or torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cpu" if SMOKE else "cuda")
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
torch.backends.cudnn.benchmark = True
TINY = ModelConfig(name="lavt_tiny", random_init=True)
SWIN = ModelConfig(name="lavt_swin", random_init=True, freeze_text=False, decoder_channels=256, fusion_heads=1,
                   detail_stride=4)
DICE = BurnInConfig().dice_weight  # the CPU default's Dice term; the paper's Swin run trains on CE alone
CASES = [  # (label, config, image size, batch, dice weight)
    ("lavt_tiny", TINY, 96, 32, DICE),
    ("lavt_tiny", TINY, 128, 64, DICE),
    ("lavt_tiny", TINY, 480, 16, DICE),
    ("lavt_swin (Swin-T + BERT-base)", SWIN, 480, 16, 0.0),
]
WARM, STEPS, L = 3, 10, 20
if SMOKE:
    CASES = [(label, cfg, 64, 2, dice) for label, cfg, _, _, dice in CASES]
    WARM, STEPS = 1, 1


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


rows, raw = [], []
for label, cfg, size, batch, dice in CASES:
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    opt = build_optimizer(model, 5e-5, 0.01)
    sched = build_scheduler(opt, 1000, 0.9)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = (torch.rand(batch, size, size, device=dev) > 0.8).long()
    ids = torch.randint(1000, 30000, (batch, L), device=dev)
    mask = torch.ones(batch, L, dtype=torch.long, device=dev)
    mask[:, 12:] = 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    for i in range(WARM + STEPS):
        if i == WARM:
            sync()
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = model(x, ids, mask)
        loss = supervised_loss(logits, y, dice_weight=dice)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync()
    train = batch * STEPS / (time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
    model.eval()
    with torch.no_grad():
        for i in range(WARM + STEPS):
            if i == WARM:
                sync()
                t0 = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                model(x, ids, mask)
    sync()
    ev = batch * STEPS / (time.perf_counter() - t0)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    rows.append([label, size, batch, round(train, 1), round(ev, 1), round(mem, 2), round(n, 1)])
    raw.append(dict(zip(["model", "image_size", "batch", "train_images_per_s", "eval_images_per_s",
                         "peak_mem_gib", "params_m"], rows[-1]), loss=float(loss)))
    print(rows[-1], flush=True)
    del model, opt, sched
    if dev.type == "cuda":
        torch.cuda.empty_cache()

doc = {"title": "RES model throughput on one GPU (bf16 autocast)",
       "columns": ["model", "image size", "batch", "train images/s", "eval images/s", "peak GiB", "params (M)"],
       "rows": rows, "raw": raw,
       "notes": (f"random weights, {STEPS} timed steps after {WARM} warm-up; train step = forward + loss + backward + "
                 f"AdamW + poly LR. lavt_tiny: the CPU default ({TINY.fusion_heads} fusion heads, stride-"
                 f"{TINY.detail_stride} detail head, CE + {DICE:g} x Dice), frozen text features cached (fixed "
                 f"sentences); lavt_swin: the paper's settings ({SWIN.fusion_heads} head, stride-{SWIN.detail_stride} "
                 "logits, CE), BERT-base trained jointly as LAVT does"),
       "machine": f"{torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'CPU smoke run'}, torch {torch.__version__}",
       "date": dt.date.today().isoformat()}
with open(f"{sys.argv[1]}/gpu_train.json", "w") as fh:
    json.dump(doc, fh, indent=2)
print(json.dumps(doc, indent=2))
PY
