"""Vectorised IOM / CPI (+PWA) against the straightforward per-candidate loop, same inputs.

Two kinds of input:
- synthetic: per image K random ellipses and boxes from a few pixels to half the image, some of
  them parts and near-copies of the pseudo-mask, and a blob-shaped teacher pseudo-mask;
- stored (``--store``): real candidates of RefShapes images from a candidates stage folder (the
  embedded generator's, or SAM's), the K best per image resized to the case's side, with a ref's
  true mask shifted by 2 % of the side as the pseudo-mask.
Each case runs three implementations on identical inputs: the loop (semires.refine.reference),
the dense vectorised path (CandidateBatch) and the atom path (AtomBatch, atoms built once per
image as the training loader does). Labels, matched flags, part counts and scores must be equal
(weights to 1e-6), else the script fails.

Usage:
    python benchmarks/refine_speed_bench.py --store data/candidates --index data/index.json
    python benchmarks/refine_speed_bench.py --device cuda --name refine_speed_bench_cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from semires import io
from semires.hardware import describe, load_average
from semires.refine import AtomBatch, AtomCandidates, CandidateBatch, RefineConfig, refine
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




def refine_atoms(pseudo, prob, atoms, cfg):
    """The training path: pack the batch's cached per-image atoms, then refine."""
    return refine(pseudo, prob, AtomBatch.from_list(atoms, pseudo.device), cfg)


def store_inputs(store_dir: Path, index_path: Path, b: int, k: int, side: int, seed: int = 0):
    """B RefShapes images with their K best stored candidates (e.g. the embedded generator's), resized
    (nearest) to side x side; P = a ref's true mask shifted by 2 % of the side, with a noisy probability
    (a teacher with sloppy boundaries)."""
    from semires.candidates.store import CandidateStore
    from semires.data.index import RefIndex

    store, index = CandidateStore(store_dir, cache_size=0), RefIndex.load(index_path)
    rng = np.random.default_rng(seed)
    refs = [r for r in index.refs.values() if int(r["image_id"]) in store]
    pick = rng.choice(len(refs), b, replace=False)
    pseudo, prob, stacks = [], [], []
    from semires.engine.transforms import resize_mask

    for i in pick:
        truth = resize_mask(index.ref_mask(int(refs[i]["ref_id"])), side)
        p = np.roll(truth, max(1, round(0.02 * side)), axis=1)
        pseudo.append(p)
        prob.append(np.clip(np.where(p, 0.8, 0.15) + rng.normal(0, 0.1, p.shape), 0, 1).astype(np.float32))
        stacks.append(store.masks(int(refs[i]["image_id"]), (side, side))[:k].contiguous())
    return torch.from_numpy(np.stack(pseudo)), torch.from_numpy(np.stack(prob)), stacks


def load_note() -> str:
    """The 1-minute load average, since CPU timings on a shared machine depend on it."""
    return f"Load average at the end: {load_average():.1f}."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default="8x100x480,8x100x128", help="comma list of BxKxSIDE")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the vectorised version")
    ap.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="refine_speed_bench")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON goes")
    ap.add_argument("--store", type=Path, default=None,
                    help="also a case of real stored candidates (a candidates stage folder) on RefShapes images")
    ap.add_argument("--index", type=Path, default=None, help="the index of --store's images")
    ap.add_argument("--store-cases", default="8x100x480,8x300x128",
                    help="BxKxSIDE cases of stored candidates (the K best of each image, resized to SIDE)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = args.device
    rows, raw = [], []
    cases = [(c, False) for c in args.cases.split(",")] + [(c, True) for c in (args.store_cases.split(",")
                                                                               if args.store else [])]
    for case, stored in cases:
        b, k, side = (int(v) for v in case.split("x"))
        pseudo, prob, stacks = (store_inputs(args.store, args.index, b, k, side) if stored
                                else make_inputs(b, k, side, side))
        k = int(np.median([len(m) for m in stacks]))
        pseudo, prob = pseudo.to(dev), prob.to(dev)
        stacks = [s.to(dev) for s in stacks]
        cands = CandidateBatch.from_list(stacks)
        t0 = time.perf_counter()
        atoms = [AtomCandidates.from_masks(m) for m in stacks]  # once per image in training (cached by the loader)
        t_atomise = (time.perf_counter() - t0) * 1e3 / b
        n_atoms = statistics.median(a.member.shape[0] for a in atoms)
        for strategy in ("iom", "cpi"):
            cfg = RefineConfig(strategy=strategy, pwa=True)
            t_vec, vec = timed(partial(refine, pseudo, prob, cands, cfg), args.repeats, dev)
            t_atoms, via_atoms = timed(partial(refine_atoms, pseudo, prob, atoms, cfg), args.repeats, dev)
            t_loop, ref = timed(partial(refine_loop, pseudo, prob, stacks, cfg), args.loop_repeats, dev)
            assert_same(vec, ref)
            assert_same(via_atoms, ref)
            matched = int(vec.matched.sum())
            rows.append([f"{side}x{side}" + (" stored" if stored else " synthetic"), b, k, dev, f"{strategy}+pwa", f"{matched}/{b}", round(t_loop, 2),
                         round(t_vec, 2), round(t_loop / t_vec, 1), round(t_atoms, 2), round(t_loop / t_atoms, 1),
                         int(n_atoms), round(t_atomise, 1)])
            raw.append({"side": side, "stored_candidates": stored, "batch": b, "candidates": k, "device": dev, "strategy": strategy, "pwa": True,
                        "matched": matched, "loop_ms": t_loop, "vectorised_ms": t_vec, "speedup": t_loop / t_vec,
                        "atoms_ms": t_atoms, "atoms_speedup": t_loop / t_atoms, "median_atoms_per_image": n_atoms,
                        "atomise_ms_per_image": t_atomise})
            print(rows[-1], flush=True)
    result = {
        "title": "Pseudo-label refinement: vectorised vs per-candidate loop",
        "columns": ["mask size", "B", "K", "device", "variant", "matched", "loop ms", "dense ms", "dense speed-up",
                    "atoms ms", "atoms speed-up", "atoms / image", "atomise ms / image (once)"],
        "rows": rows,
        "notes": ("Median wall time of one batch (IOM/CPI with PWA); outputs asserted equal (weights to 1e-6). "
                  "'synthetic' rows: SAM-like random ellipses/boxes; 'stored' rows: the embedded generator's candidates "
                  "of RefShapes images (not SAM output), resized to the case's side. Loop = semires.refine.reference "
                  "(per candidate: AND/OR/area counts with torch, Python comparisons). On CPU at 480x480 both sides "
                  "are bound by memory traffic over the candidate stack (B*K*H*W bytes: 184 MB here): the loop's "
                  "per-candidate ops are already vectorised over 230k pixels, so the gain is fewer passes over the "
                  "stack (one fused, cache-blocked pass) and no per-candidate Python; on CUDA the loop pays a kernel "
                  "launch and a host sync per candidate. 'atoms' = the same functions on AtomBatch (pixels grouped by "
                  "candidate membership, built once per image and cached by the training loader; the one-off cost "
                  "is the last column): one pass over an H x W atom map instead of K masks. These random ellipses "
                  "overlap far more than SAM or embedded-generator masks (RefShapes: 80-280 atoms per image), so "
                  "the atom maps here are a hard case. " + load_note()),
        "machine": describe(dev),
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
