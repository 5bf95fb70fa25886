"""Vectorised IOM / CPI (+PWA) against the straightforward per-candidate loop, same inputs.

Inputs imitate SAM "everything" output: per image K candidates (ellipses and boxes from a few
pixels to most of the image, some of them parts and near-copies of the pseudo-mask, so both
matched and unmatched samples occur) and a blob-shaped teacher pseudo-mask with probabilities.
For each case the two implementations run on identical tensors; labels, matched flags, part
counts and scores must be equal (weights equal to 1e-6), else the script fails.

Usage:
    python benchmarks/refine_speed_bench.py                     # CPU cases, writes results/refine_speed_bench.json
    python benchmarks/refine_speed_bench.py --device cuda --name refine_speed_bench_cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from semires import io
from semires.refine import CandidateBatch, RefineConfig, refine
from semires.refine.reference import refine_loop


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_inputs(b: int, k: int, h: int, w: int, seed: int = 0):
    """(pseudo (B,H,W) bool, prob (B,H,W) float32, stacks: B x (K,H,W) bool), SAM-like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pseudo, prob, stacks = [], [], []
    for i in range(b):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.08, 0.25) * h, rng.uniform(0.08, 0.25) * w
        obj = _ellipse(yy, xx, cy, cx, ry, rx)
        # teacher: soft blob, noisy boundary; half the images get a worse (shifted, bigger) guess
        shift = 0.0 if i % 2 == 0 else 0.35
        d = np.sqrt(((yy - cy - shift * ry) / (ry * (1 + shift))) ** 2 + ((xx - cx) / rx) ** 2)
        p = 1.0 / (1.0 + np.exp((d - 1.0) * 8.0)) + rng.normal(0, 0.08, (h, w))
        p = np.clip(p, 0, 1).astype(np.float32)
        pseudo.append(p > 0.5)
        prob.append(p)
        cands = np.empty((k, h, w), dtype=bool)
        cands[0] = obj
        cands[1] = obj & (yy < cy)  # upper part
        cands[2] = obj & (yy >= cy)  # lower part
        for j in range(3, k):
            sy, sx = rng.uniform(0.02, 0.5) * h, rng.uniform(0.02, 0.5) * w
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            if rng.random() < 0.5:
                cands[j] = _ellipse(yy, xx, y0, x0, sy, sx)
            else:
                cands[j] = (np.abs(yy - y0) <= sy) & (np.abs(xx - x0) <= sx)
        order = rng.permutation(k)
        stacks.append(torch.from_numpy(cands[order]))
    return torch.from_numpy(np.stack(pseudo)), torch.from_numpy(np.stack(prob)), stacks


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> tuple[float, object]:
    """Median wall time in ms over ``repeats`` runs after one warm-up, and the last output."""
    out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def assert_same(a, b) -> None:
    for f in ("label", "matched", "parts", "score"):
        if not torch.equal(getattr(a, f).cpu(), getattr(b, f).cpu()):
            raise AssertionError(f"vectorised and loop results differ in {f}")
    if not torch.allclose(a.weight.cpu(), b.weight.cpu(), atol=1e-6, rtol=0):
        raise AssertionError("vectorised and loop weights differ by more than 1e-6")


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    s = f"{cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    if device == "cuda":
        s = f"{torch.cuda.get_device_name()} ({s})"
    return s


def load_note() -> str:
    """The 1-minute load average, since CPU timings on a shared machine depend on it."""
    try:
        return f"Load average at the end: {os.getloadavg()[0]:.1f}."
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default="8x100x480,8x100x128", help="comma list of BxKxSIDE")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the vectorised version")
    ap.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="refine_speed_bench")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON goes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = args.device
    rows, raw = [], []
    for case in args.cases.split(","):
        b, k, side = (int(v) for v in case.split("x"))
        pseudo, prob, stacks = make_inputs(b, k, side, side)
        pseudo, prob = pseudo.to(dev), prob.to(dev)
        stacks = [s.to(dev) for s in stacks]
        cands = CandidateBatch.from_list(stacks)
        for strategy in ("iom", "cpi"):
            cfg = RefineConfig(strategy=strategy, pwa=True)
            t_vec, vec = timed(partial(refine, pseudo, prob, cands, cfg), args.repeats, dev)
            t_loop, ref = timed(partial(refine_loop, pseudo, prob, stacks, cfg), args.loop_repeats, dev)
            assert_same(vec, ref)
            matched = int(vec.matched.sum())
            rows.append([f"{side}x{side}", b, k, dev, f"{strategy}+pwa", f"{matched}/{b}", round(t_loop, 2),
                         round(t_vec, 2), round(t_loop / t_vec, 1)])
            raw.append({"side": side, "batch": b, "candidates": k, "device": dev, "strategy": strategy, "pwa": True,
                        "matched": matched, "loop_ms": t_loop, "vectorised_ms": t_vec, "speedup": t_loop / t_vec})
            print(rows[-1], flush=True)
    result = {
        "title": "Pseudo-label refinement: vectorised vs per-candidate loop",
        "columns": ["mask size", "B", "K", "device", "variant", "matched", "loop ms", "vectorised ms", "speed-up"],
        "rows": rows,
        "notes": ("Median wall time of one batch (IOM/CPI with PWA); outputs asserted equal (weights to 1e-6). "
                  "Candidates are SAM-like ellipses/boxes, not SAM output. Loop = semires.refine.reference "
                  "(per candidate: AND/OR/area counts with torch, Python comparisons). On CPU at 480x480 both sides "
                  "are bound by memory traffic over the candidate stack (B*K*H*W bytes: 184 MB here): the loop's "
                  "per-candidate ops are already vectorised over 230k pixels, so the gain is fewer passes over the "
                  "stack (one fused, cache-blocked pass) and no per-candidate Python; on CUDA the loop pays a kernel "
                  "launch and a host sync per candidate. " + load_note()),
        "machine": machine(dev),
        "date": dt.date.today().isoformat(),
        "raw": raw,
        "settings": {"repeats": args.repeats, "loop_repeats": args.loop_repeats, "threads": args.threads},
    }
    out = args.out_dir / f"{args.name}.json"
    io.write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
