"""SemiRES ablation on RefShapes: supervised only, mean teacher, +IOM, +CPI, +IOM+PWA, +CPI+PWA and
fully supervised, at 1%, 5% and 10% labels (several seeds at 1%), scored on val / testA / testB.

Per (ratio, seed): one burn-in (= the "supervised only" row and the start of every semi run), then
one online semi-supervised run per variant (EMA teacher kept by val oIoU), each evaluated on every
expression of val, testA and testB. The pseudo-labels of each ratio's burn-in teacher are also refined
offline with IOM and CPI per ratio and scored against the truth (the refinement lift), written to
``results/pseudo_label_quality.json``. Every stage is an MLflow run nested under one parent run.
Every run folder is resumable: rerunning the script skips finished runs.

Budgets (the JSON records which one produced the numbers):
  smoke  RefShapes 'tiny', a few steps: checks the script end to end (tests), numbers meaningless
  small  RefShapes 'default', 64 px, 900 burn-in steps (as benchmarks/supervised_bench.py) + 600 semi
         steps, EMA momentum 0.99 (CPU: 6 to 10 min per run on one busy core; with 600 steps the
         paper's 0.9996 would leave the teacher at ~79% burn-in weights, so the small budget uses a
         shorter EMA horizon)
  full   RefShapes 'default', 128 px, 1800 burn-in + 4000 semi steps, EMA momentum 0.9996 (the paper)

    python benchmarks/ablation_bench.py --budget small [--ratios 0.01] [--seeds 0,1] [--variants mt,iom+pwa]
        [--semi-ratios 0.01] [--candidates DIR] [--work /tmp/semires_ablation] [--mlflow-uri URI]
        [--detail-stride 4]   # LAVT's stride-4 logits instead of the default model's detail head

Candidates: ``--candidates`` names a candidate store covering the train images; without it the
embedded generator (``candidates`` section defaults) is run once into ``<work>/candidates``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from semires import io
from semires.data.index import RefIndex
from semires.data.splits import make_splits, ratio_name
from semires.data.synthetic import META, prepare
from semires.eval.evaluate import evaluate_checkpoint
from semires.hardware import cpu_amp, describe
from semires.models import ModelConfig
from semires.refine import RefineConfig
from semires.runs import params_hash
from semires.tracking import PARENT_ENV, Tracker, TrackingConfig
from semires.train.config import BurnInConfig
from semires.train.semi_config import SemiConfig

VARIANTS: dict[str, RefineConfig | None] = {
    "supervised": None,
    "mt": RefineConfig(strategy="none", pwa=False),
    "iom": RefineConfig(strategy="iom", pwa=False),
    "cpi": RefineConfig(strategy="cpi", pwa=False),
    "iom+pwa": RefineConfig(strategy="iom", pwa=True),
    "cpi+pwa": RefineConfig(strategy="cpi", pwa=True),
}
LABELS = {"supervised": "supervised only", "mt": "mean teacher", "iom": "+IOM", "cpi": "+CPI", "iom+pwa": "+IOM+PWA",
          "cpi+pwa": "+CPI+PWA", "full": "fully supervised (100%)"}
SPLITS = ("val", "testA", "testB")
# Bumped when a code change invalidates finished runs that use candidates (semi runs, refined
# pseudo-labels); burn-ins are keyed by their settings and data alone. 2: candidate masks resized
# on pixel centres, like the truth (they had been half an input pixel off).
CANDIDATE_RUNS_VERSION = 2
CACHE = 256  # decoded candidate stacks kept in memory (the store's default, 1024, costs ~1 GB at 64 px)

BUDGETS: dict[str, dict] = {
    "smoke": {"preset": "tiny", "model": {"channels": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "decoder_channels": 8},
              "burn_in": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "image_size": 32},
              "full_epochs": 1,
              "semi": {"steps": 4, "batch_size": 2, "eval_every": 2, "ema_momentum": 0.9}},
    "small": {"preset": "default", "model": {},
              "burn_in": {"epochs": 6, "steps_per_epoch": 150, "batch_size": 16, "image_size": 64, "lr": 2e-3,
                          "val_max_expressions": 400, "warmup_steps": 50},
              "full_epochs": 3,
              "semi": {"steps": 600, "batch_size": 8, "eval_every": 200, "ema_momentum": 0.99,
                       "val_max_expressions": 400}},
    "full": {"preset": "default", "model": {},
             "burn_in": {"epochs": 12, "steps_per_epoch": 150, "batch_size": 16, "image_size": 128, "lr": 2e-3,
                         "val_max_expressions": 1000, "warmup_steps": 50},
             "full_epochs": 12,
             "semi": {"steps": 4000, "batch_size": 8, "eval_every": 500, "ema_momentum": 0.9996,
                      "val_max_expressions": 1000}},
}


def candidate_source(work: Path, index: RefIndex, given: Path | None):
    """The candidate store to refine with: ``given``, else the embedded generator's (``candidates``
    section defaults) on every train image, built once into ``<work>/candidates``."""
    from semires.candidates.store import MANIFEST, CandidateStore, generate_shard, merge

    if given is not None:
        return CandidateStore(given, cache_size=CACHE)
    out = work / "candidates"
    if not (out / MANIFEST).is_file():
        from semires.candidates import build_generator
        from semires.candidates.config import CandidatesConfig

        generate_shard(index, index.image_ids("train"), 0, 1, out, build_generator(CandidatesConfig()), progress=True)
        merge(out, 1)
    return CandidateStore(out, cache_size=CACHE)


def result_name(stem: str, budget: str, detail_stride: int | None = None, burn_epochs: int | None = None) -> str:
    """Results file of a budget: the README's main tables come from 'small' with the default model;
    the other budgets write beside them (``<stem>_smoke.json``, ``<stem>_full.json``), and so does a
    model with another logit stride (``<stem>_full_stride4.json``) or a longer burn-in
    (``<stem>_stride4_burn24.json``), never overwriting them."""
    name = stem if budget == "small" else f"{stem}_{budget}"
    if detail_stride is not None:
        name += f"_stride{detail_stride}"
    if burn_epochs is not None:
        name += f"_burn{burn_epochs}"
    return f"{name}.json"


def budget_settings(name: str, detail_stride: int | None = None, burn_epochs: int | None = None) -> dict:
    """A budget's settings, with the model's logit stride overridden when given (4 = LAVT's
    stride-4 logits without the detail head: the paper's model, whose coarser pseudo-masks leave
    refinement more boundary to correct), and the burn-in's epochs (a stronger teacher: the
    refinement lift grows with the share of pseudo-labels that land on the referred object)."""
    budget = {**BUDGETS[name], "model": dict(BUDGETS[name]["model"]), "burn_in": dict(BUDGETS[name]["burn_in"])}
    if detail_stride is not None:
        budget["model"]["detail_stride"] = detail_stride
    if burn_epochs is not None:
        budget["burn_in"]["epochs"] = burn_epochs
    return budget


def _mean(xs: list[float]) -> float:
    return float(statistics.fmean(xs)) if xs else float("nan")


def _evaluate(index_path: Path, model: Path, out: Path, tracking: TrackingConfig, name: str) -> dict:
    with Tracker(tracking, out).run(f"eval {name}", {"semires.bench": "ablation"}) as trk:
        return evaluate_checkpoint(index_path, model, out, splits=list(SPLITS), device="cpu", tracker=trk,
                                   overlays=4, progress=False)["splits"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    ap.add_argument("--ratios", default="0.01,0.05,0.1")
    ap.add_argument("--seeds", default="0,1", help="label-split seeds at 1%% (other ratios use the first)")
    ap.add_argument("--variants", default=",".join(list(VARIANTS) + ["full"]))
    ap.add_argument("--semi-ratios", default=None,
                    help="ratios that get the semi-supervised variants (default: every ratio); the others get "
                         "only their burn-in and pseudo-label quality, e.g. for a partial run of a costly budget")
    ap.add_argument("--candidates", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_ablation"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mlflow-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else <work>/mlflow.db")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--detail-stride", type=int, choices=(1, 2, 4), default=None,
                    help="the model's logit stride (default: the budget's model, stride 2); 4 = LAVT's head")
    ap.add_argument("--burn-epochs", type=int, default=None,
                    help="burn-in epochs (default: the budget's); a longer burn-in gives a stronger teacher")
    ap.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True,
                    help="refine each ratio's burn-in pseudo-labels offline and score them (pseudo_label_quality.json)")
    args = ap.parse_args(argv)
    from semires.train.semi import train_semi
    from semires.train.supervised import train_supervised

    torch.set_num_threads(args.threads)
    budget = budget_settings(args.budget, args.detail_stride, args.burn_epochs)
    work = args.work / args.budget
    ratios = [float(r) for r in args.ratios.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    semi_ratios = set(ratios if args.semi_ratios is None else (float(r) for r in args.semi_ratios.split(",")))
    unknown = set(variants) - set(VARIANTS) - {"full"}
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS) + ['full']}")
    refer, index_path = prepare(work, budget["preset"])
    index = RefIndex.load(index_path)
    model_cfg = ModelConfig(**budget["model"])
    # bf16 autocast where the CPU has it natively (1.3x the steps per second, same quality per step)
    common = {"device": "cpu", "threads": args.threads, "log_every": 50, "overlays": 4, "amp": cpu_amp()}
    burn_cfg = BurnInConfig(**budget["burn_in"], **common, checkpoint_every=200)
    semi_base = {**budget["semi"], **common, "checkpoint_every": 200}
    # run folders carry a hash of their settings: another budget never reuses a finished run
    # (and of the data: a redrawn RefShapes never reuses runs trained on the old one)
    data_sum = io.read_json(refer / META)["checksum"]
    burn_key = params_hash({"model": model_cfg, "burn_in": burn_cfg, "data": data_sum})[:8]
    semi_key = params_hash({"burn": burn_key, "semi": semi_base, "version": CANDIDATE_RUNS_VERSION})[:8]
    tracking = TrackingConfig(uri=args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
                              or f"sqlite:///{(work / 'mlflow.db').resolve()}", experiment="semires-ablation",
                              log_model=False)
    needs_cands = args.quality or any(VARIANTS.get(v) is not None and VARIANTS[v].strategy != "none" for v in variants)
    source = candidate_source(work, index, args.candidates) if needs_cands else None
    results: dict[tuple, dict] = {}
    quality: dict[float, dict] = {}
    t_bench = time.perf_counter()
    with Tracker(tracking, work).run(f"ablation_bench ({args.budget})", {"semires.bench": "ablation"}) as parent:
        parent.log_params({"budget": args.budget, "burn_in": burn_cfg.model_dump(mode="json"), "semi": semi_base,
                           "model": model_cfg.model_dump(mode="json")})
        os.environ[PARENT_ENV] = parent.run_id or ""
        plan = [(r, s) for r in ratios for s in (seeds if r == min(ratios) else seeds[:1])]
        for ratio, seed in plan:
            split = make_splits(index, [ratio], seed, work / f"splits_s{seed}")[ratio]
            from semires.data.splits import load_split

            sp = load_split(split)
            tag = f"{ratio_name(ratio)}_s{seed}"
            burn = work / "runs" / tag / f"supervised-{burn_key}"
            burn_metrics = train_supervised(index, sp.labeled, burn, model_cfg, BurnInConfig(**{**burn_cfg.model_dump(), "seed": seed}),
                             tracking, progress=False, run_name=f"burn_in {tag}")
            if "supervised" in variants:
                results[(ratio, seed, "supervised")] = {"eval": _evaluate(index_path, burn / "best.safetensors",
                                                                          burn / "eval", tracking, f"supervised {tag}"),
                                                        "train_s": burn_metrics["train_s"]}
                print(tag, "supervised", _summary(results[(ratio, seed, "supervised")]), flush=True)
            if seed == seeds[0] and args.quality:
                pseudo_dir = work / "pseudo" / f"{tag}-{burn_key}-v{CANDIDATE_RUNS_VERSION}"
                quality[ratio] = pseudo_quality(index, sp, burn, pseudo_dir, source, tracking)
                write_quality(args, quality, model_cfg, burn_cfg)
            for v in variants:
                if v in ("supervised", "full") or ratio not in semi_ratios:
                    continue
                out = work / "runs" / tag / f"{v}-{semi_key}"
                semi_metrics = train_semi(index, sp.labeled, sp.unlabeled, burn / "best.safetensors", out,
                           SemiConfig(**{**semi_base, "seed": seed}), VARIANTS[v],
                           source if VARIANTS[v].strategy != "none" else None, tracking=tracking, progress=False,
                           run_name=f"semi {v} {tag}")
                results[(ratio, seed, v)] = {"eval": _evaluate(index_path, out / "best.safetensors", out / "eval",
                                                               tracking, f"{v} {tag}"),
                                             "train_s": semi_metrics["train_s"]}
                print(tag, v, _summary(results[(ratio, seed, v)]), flush=True)
                write(args, results, ratios, seeds, variants, budget, time.perf_counter() - t_bench)
        if "full" in variants:
            out = work / "runs" / f"full-{burn_key}"
            full_metrics = train_supervised(index, None, out, model_cfg,
                             BurnInConfig(**{**burn_cfg.model_dump(), "epochs": budget["full_epochs"],
                                             "steps_per_epoch": None}), tracking, progress=False, run_name="full")
            results[(1.0, 0, "full")] = {"eval": _evaluate(index_path, out / "best.safetensors", out / "eval",
                                                           tracking, "full"), "train_s": full_metrics["train_s"]}
            print("full", _summary(results[(1.0, 0, "full")]), flush=True)
        os.environ.pop(PARENT_ENV, None)
    path = write(args, results, ratios, seeds, variants, budget, time.perf_counter() - t_bench)
    print(f"wrote {path}")
    return 0


def _head(detail_stride: int) -> str:
    return ("LAVT's stride-4 logits, no detail head" if detail_stride == 4
            else f"stride-{detail_stride} detail head")


def _summary(res: dict) -> str:
    return ", ".join(f"{s} {res['eval'][s]['mIoU']:.1f}/{res['eval'][s]['oIoU']:.1f}" for s in SPLITS)


def write(args, results: dict, ratios, seeds, variants, budget: dict, wall: float) -> Path:
    """Aggregate finished runs (mean over seeds) into results/ablation_bench.json."""
    rows, raw = [], []
    order = [v for v in list(VARIANTS) + ["full"] if v in variants]
    for ratio in ratios + [1.0]:
        for v in order:
            runs = [res for (r, s, name), res in sorted(results.items()) if r == ratio and name == v]
            if not runs:
                continue
            cells = []
            for split in SPLITS:
                for m in ("mIoU", "oIoU"):
                    cells.append(round(_mean([x["eval"][split][m] for x in runs]), 2))
            sup = [res for (r, s, name), res in results.items() if r == ratio and name == "supervised"]
            delta = (round(cells[0] - _mean([x["eval"]["val"]["mIoU"] for x in sup]), 2)
                     if sup and v not in ("supervised", "full") else None)
            rows.append([f"{100 * ratio:g}%", LABELS[v], len(runs), *cells, delta])
    for (r, s, name), res in sorted(results.items()):
        raw.append({"ratio": r, "seed": s, "variant": name, "eval": res["eval"], "train_s": round(res["train_s"], 1)})
    model = ModelConfig(**budget["model"])
    doc = {"title": "SemiRES ablation on RefShapes (CPU default model)",
           "columns": ["labeled", "variant", "seeds", "val mIoU", "val oIoU", "testA mIoU", "testA oIoU",
                       "testB mIoU", "testB oIoU", "val mIoU vs supervised"],
           "rows": rows, "raw": raw, "budget": args.budget, "budget_settings": budget,
           "notes": (f"Budget '{args.budget}': {budget['burn_in']} burn-in, {budget['semi']} semi "
                     "(online refinement with the embedded candidate generator, not SAM). Mean over seeds where "
                     f"several ({seeds} at the smallest ratio). Kept model: EMA teacher by val oIoU. Scores on every "
                     "expression of each split. lavt_tiny (frozen MiniLM-L6 + conv backbone, "
                     f"{model.fusion_heads} fusion heads, {_head(model.detail_stride)}); "
                     "supervised loss CE + "
                     f"{BurnInConfig().dice_weight:g} x Dice, unsupervised CE (+PWA); autocast {cpu_amp()}."),
           "machine": describe("cpu", args.threads) + " (shared machine)",
           "date": dt.date.today().isoformat(), "this_invocation_s": round(wall, 1),
           "train_s_total": round(sum(res["train_s"] for res in results.values()), 1)}
    return io.write_json(args.out_dir / result_name("ablation_bench", args.budget, args.detail_stride, args.burn_epochs), doc)


def pseudo_quality(index, sp, burn: Path, out: Path, source, tracking) -> dict:
    """Refinement lift: the burn-in teacher's pseudo-labels against the truth, before and after IOM / CPI."""
    from semires.pseudo.config import PseudoLabelConfig, RefineStageConfig
    from semires.pseudo.label import run_pseudo_label
    from semires.pseudo.refine_stage import run_refine

    run_pseudo_label(index, sp.unlabeled, burn / "best.safetensors", out / "pseudo",
                     PseudoLabelConfig(device="cpu"), tracking, progress=False)
    reports = {name: run_refine(index, out / "pseudo", source, out / name, VARIANTS[name],
                                RefineStageConfig(overlays=16), tracking, progress=False) for name in ("iom", "cpi")}
    print("pseudo-label quality", ratio_name(sp.ratio), {k: (round(r["before"]["mIoU"], 2), round(r["after"]["mIoU"], 2),
                                                             round(r["match_rate"], 1)) for k, r in reports.items()},
          flush=True)
    return reports


def write_quality(args, quality: dict[float, dict], model: ModelConfig, burn: BurnInConfig) -> Path:
    """results/pseudo_label_quality.json: pseudo-label mIoU / oIoU against the truth, before and after."""
    rows = []
    for ratio, reports in sorted(quality.items()):
        for name, rep in reports.items():
            m, on = rep["groups"]["matched"], rep["groups"]["on_target"]
            rows.append([f"{100 * ratio:g}%", LABELS[name], rep["n"], round(rep["match_rate"], 1),
                         round(rep["before"]["mIoU"], 2), round(rep["after"]["mIoU"], 2), round(rep["delta_mIoU"], 2),
                         round(rep["before"]["oIoU"], 2), round(rep["after"]["oIoU"], 2),
                         None if m["n"] == 0 else round(m["after"]["mIoU"] - m["before"]["mIoU"], 2),
                         round(100 * on["n"] / max(1, rep["n"]), 1),
                         None if on["n"] == 0 else round(on["before"]["mIoU"], 2),
                         None if on["n"] == 0 else round(on["after"]["mIoU"] - on["before"]["mIoU"], 2)])
    doc = {"title": "Pseudo-label quality on RefShapes unlabeled refs: burn-in teacher vs refined",
           "columns": ["labeled", "refinement", "expressions", "match rate %", "mIoU before", "mIoU after",
                       "delta mIoU", "oIoU before", "oIoU after", "delta mIoU (matched)", "on target %",
                       "mIoU before (on target)", "delta mIoU (on target)"],
           "rows": rows, "raw": {f"{r:g}": reps for r, reps in quality.items()}, "budget": args.budget,
           "notes": (f"Teacher: each ratio's burn-in (first seed, budget '{args.budget}', logit stride {model.detail_stride}, "
                     f"{burn.epochs} epochs x {burn.steps_per_epoch} steps of batch {burn.batch_size}) on every unlabeled train "
                     "expression; IoU against the true mask at the prediction size. 'On target': pseudo-labels with IoU "
                     ">= 0.5 before refinement (the teacher found the referred object; the rest segment another "
                     "object or none, which no refinement can repair). Candidates: the embedded "
                     "generator (not SAM) unless --candidates named another store. Unmatched samples keep their "
                     "pseudo-mask."),
           "machine": describe("cpu", args.threads),
           "date": dt.date.today().isoformat()}
    return io.write_json(args.out_dir / result_name("pseudo_label_quality", args.budget, args.detail_stride, args.burn_epochs), doc)


if __name__ == "__main__":
    sys.exit(main())
