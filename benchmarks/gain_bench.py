"""SemiRES' gain at the paper's label budget on RefShapes: does the student beat supervised-only?

The headline budget is RefCOCO's 1 % in absolute terms: the ``headline`` RefShapes preset labels 4 %
of its 4,250 train images, 170 images with about 1,200 expressions (RefCOCO 1 %: 169 images, 1,222
expressions); the other 4,080 train images are the unlabeled pool. Every arm starts from the
backbone that the ``pretrain`` stage trains on a disjoint generated pool (the stand-in for ImageNet
weights), except ``burn_in_scratch``, which measures what the pretraining buys.

Arms (per label-split seed; ``--arms`` picks, each run folder is resumable and keyed by its settings):

  burn_in_scratch   supervised on the labeled part, backbone from scratch (the old baseline)
  burn_in           supervised on the labeled part from the pretrained backbone: the paper's baseline
                    and the start of every semi-supervised run (B steps)
  supervised_long   supervised, pretrained backbone, B + S steps: as many optimizer steps as burn-in
                    plus the semi-supervised run, so that no gain can come from training longer
  mt, iom, cpi, iom+pwa, cpi+pwa
                    SemiRES online mean teacher from ``burn_in`` for S steps, refined with the
                    embedded candidate generator (the variant names of ``ablation_bench``)
  iom+pwa+conf      IOM+PWA training only on pseudo-labels the teacher is confident of (``semi.min_confidence``)
  ref+soft          beyond the paper: the teacher reads every sentence of the ref and its mean probability
                    picks the candidate of highest soft IoU (``semi.ref_consensus``, ``refine.strategy:
                    soft_iom``), against pseudo-masks on the wrong object
  ref+soft+comp     ref+soft, and the other refs of the image compete for each pixel (``semi.ref_competition``):
                    a pixel another ref claims more strongly leaves this ref's pseudo-label

Each run is scored on every expression of val, testA and testB. ``--quality`` also scores the
burn-in teachers' pseudo-labels on part of the unlabeled pool (on-target share, IOM / CPI lift).
``--report`` writes ``results/gain_bench.json`` from every finished run (mean and spread over seeds).

    python benchmarks/gain_bench.py --arms burn_in_scratch,burn_in --seeds 0     # one process per core
    python benchmarks/gain_bench.py --arms mt --seeds 0,1,2
    python benchmarks/gain_bench.py --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from semires import io
from semires.data.index import RefIndex
from semires.data.splits import load_split, make_splits, ratio_name
from semires.data.synthetic import META, prepare
from semires.eval.evaluate import evaluate_checkpoint
from semires.hardware import cpu_amp, describe
from semires.models import ModelConfig
from semires.pretrain.config import PretrainConfig
from semires.refine import RefineConfig
from semires.runs import params_hash
from semires.tracking import Tracker, TrackingConfig
from semires.train.config import BurnInConfig, burn_in_steps, step_matched
from semires.train.semi_config import SemiConfig

SPLITS = ("val", "testA", "testB")
SEMI_ARMS: dict[str, tuple[RefineConfig, dict]] = {
    "mt": (RefineConfig(strategy="none", pwa=False), {}),
    "iom": (RefineConfig(strategy="iom", pwa=False), {}),
    "cpi": (RefineConfig(strategy="cpi", pwa=False), {}),
    "iom+pwa": (RefineConfig(strategy="iom", pwa=True), {}),
    "cpi+pwa": (RefineConfig(strategy="cpi", pwa=True), {}),
    "iom+pwa+conf": (RefineConfig(strategy="iom", pwa=True), {"min_confidence": 0.85}),
    "ref+soft": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True}),
    "ref+soft+comp": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True, "ref_competition": True}),
    # loss balance screens: the supervised weight of CPI's script (1) and Dice on both terms
    "iom+pwa/w1": (RefineConfig(strategy="iom", pwa=True), {"sup_weight": 1.0}),
    "iom+pwa/dice": (RefineConfig(strategy="iom", pwa=True), {"dice_weight": 1.0, "unsup_dice_weight": 1.0}),
    "ref+soft/w1": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True, "sup_weight": 1.0}),
    "ref+soft/dice": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True, "dice_weight": 1.0,
                                                                  "unsup_dice_weight": 1.0}),
    "mt/w1": (RefineConfig(strategy="none", pwa=False), {"sup_weight": 1.0}),
    "ref+soft+comp/dice": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True, "ref_competition": True,
                                                                       "dice_weight": 1.0, "unsup_dice_weight": 1.0}),
    "ref+soft+comp/w1": (RefineConfig(strategy="soft_iom", pwa=True), {"ref_consensus": True, "ref_competition": True,
                                                                     "sup_weight": 1.0}),
    # the same without candidates: what the candidate refinement adds to consensus and competition
    "ref+comp/w1": (RefineConfig(strategy="none", pwa=False), {"ref_consensus": True, "ref_competition": True,
                                                              "sup_weight": 1.0}),
}
SUPERVISED_ARMS = ("burn_in_scratch", "burn_in", "supervised_long")
LABELS = {"burn_in_scratch": "supervised only, backbone from scratch", "burn_in": "supervised only (burn-in)",
          "supervised_long": "supervised only, step-matched", "mt": "mean teacher", "iom": "+IOM", "cpi": "+CPI",
          "iom+pwa": "+IOM+PWA", "cpi+pwa": "+CPI+PWA", "iom+pwa+conf": "+IOM+PWA, confident pseudo-labels",
          "ref+soft": "ref consensus + soft IoU matching (beyond the paper)",
          "ref+soft+comp": "ref consensus + competition between the image's refs + soft IoU (beyond the paper)",
          "iom+pwa/w1": "+IOM+PWA, supervised weight 1", "iom+pwa/dice": "+IOM+PWA, Dice on both terms",
          "ref+soft/w1": "ref consensus + soft IoU, supervised weight 1",
          "ref+soft/dice": "ref consensus + soft IoU, Dice on both terms", "mt/w1": "mean teacher, supervised weight 1",
          "ref+soft+comp/dice": "ref consensus + competition + soft IoU, Dice on both terms",
          "ref+soft+comp/w1": "ref consensus + competition + soft IoU, supervised weight 1",
          "ref+comp/w1": "ref consensus + competition, no candidates, supervised weight 1"}

BUDGETS: dict[str, dict] = {
    "smoke": {"preset": "tiny", "ratio": 0.25, "model": {"channels": [8, 16, 16, 16], "depths": [1, 1, 1, 1],
                                                          "decoder_channels": 8},
              "pretrain": {"preset": "tiny", "num_images": 24, "val_images": 4, "steps": 6, "batch_size": 4,
                           "image_size": 32, "eval_every": 3},
              "burn_in": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "image_size": 32, "warmup_steps": 0},
              "semi": {"steps": 6, "batch_size": 2, "eval_every": 3}, "quality_images": 4},
    "cpu": {"preset": "headline", "ratio": 0.04, "model": {},
            "pretrain": {"num_images": 3000, "steps": 2000, "batch_size": 32, "image_size": 64},
            "burn_in": {"epochs": 6, "steps_per_epoch": 100, "batch_size": 16, "image_size": 64, "lr": 2e-3,
                        "val_max_expressions": 500, "warmup_steps": 50},
            "semi": {"steps": 6000, "batch_size": 8, "eval_every": 1000, "val_max_expressions": 500},
            "quality_images": 600},
}
# the same protocol with a semi-supervised run three times as long (and the step-matched run to match):
# does the gain over supervised-only grow with the unlabeled passes? Shares the ``cpu`` work folder
# (data, pretrained backbone, candidates, burn-in).
BUDGETS["cpu_long"] = {**BUDGETS["cpu"], "folder": "cpu",
                       "semi": {**BUDGETS["cpu"]["semi"], "steps": 18000, "eval_every": 2000}}


# SemiConfig fields added after runs were keyed: left out of a run's key while at their default, so that
# the folders of earlier runs keep their names
LATER_SEMI_FIELDS = ("ref_competition", "competing_refs")


def semi_key(cfg: SemiConfig) -> dict:
    """The semi settings that key a run folder (``LATER_SEMI_FIELDS`` only where they are set)."""
    dump = cfg.model_dump(mode="json")
    for name in LATER_SEMI_FIELDS:
        if dump[name] == SemiConfig.model_fields[name].default:
            del dump[name]
    return dump


def burn_steps(budget: dict) -> int:
    return burn_in_steps(BurnInConfig(**budget["burn_in"]))


def _mean(xs):
    return float(statistics.fmean(xs)) if xs else float("nan")


def _std(xs):
    return float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


class Bench:
    """The work folder of one budget: data, pretrained backbone, splits and run folders."""

    def __init__(self, work: Path, budget_name: str, threads: int, mlflow_uri: str | None,
                 ratio: float | None = None):
        self.budget_name, self.budget = budget_name, BUDGETS[budget_name]
        # another label ratio than the budget's headline one: its runs go to runs/<ratio>_s<seed>
        self.ratio = self.budget["ratio"] if ratio is None else ratio
        self.work = work / self.budget.get("folder", budget_name)
        self.threads = threads
        # the data is drawn once per work folder: later runs of the bench keep measuring the same images
        index_path = self.work / "index.json"
        if not index_path.is_file():
            prepare(self.work, self.budget["preset"], progress=True)
        self.index_path = index_path
        self.index = RefIndex.load(index_path)
        self.data_sum = io.read_json(self.work / "refshapes" / META)["checksum"]
        self.tracking = TrackingConfig(uri=mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
                                       or f"sqlite:///{(self.work / 'mlflow.db').resolve()}",
                                       experiment="semires-gain", log_model=False)
        self.common = {"device": "cpu", "threads": threads, "log_every": 50, "overlays": 4, "amp": cpu_amp()}
        self.model = ModelConfig(**self.budget["model"])

    # -- stages --------------------------------------------------------------------------------
    def pretrained(self) -> Path:
        from semires.pretrain.train import WEIGHTS, run_pretrain

        cfg = PretrainConfig(**{**self.budget["pretrain"], "device": "cpu", "threads": self.threads,
                                "amp": cpu_amp()})
        out = self.work / f"pretrain-{params_hash({'model': self.model, 'pretrain': cfg})[:8]}"
        run_pretrain(out, self.model, cfg, self.tracking, exclude_seeds=[0], progress=False)
        return out / WEIGHTS

    def split(self, seed: int):
        folder = make_splits(self.index, [self.ratio], seed, self.work / f"splits_s{seed}")
        return load_split(folder[self.ratio])

    def model_cfg(self, pretrained: bool) -> ModelConfig:
        if not pretrained:
            return self.model
        return self.model.model_copy(update={"backbone_weights": str(self.pretrained())})

    def burn_cfg(self, seed: int, steps: int | None = None) -> BurnInConfig:
        cfg = BurnInConfig(**self.budget["burn_in"], **self.common, seed=seed, checkpoint_every=200)
        return cfg if steps is None else step_matched(cfg, steps)

    def semi_cfg(self, seed: int, extra: dict) -> SemiConfig:
        return SemiConfig(**{**self.budget["semi"], **self.common, "checkpoint_every": 200, "seed": seed, **extra})

    def run_dir(self, seed: int, arm: str, key: str) -> Path:
        tag = f"s{seed}" if self.ratio == self.budget["ratio"] else f"{ratio_name(self.ratio)}_s{seed}"
        return self.work / "runs" / tag / f"{arm}-{key[:8]}"

    def supervised(self, seed: int, arm: str, train: bool = True) -> Path:
        """The run folder of a supervised arm, trained first unless ``train`` is False."""
        from semires.train.supervised import train_supervised

        steps = burn_steps(self.budget) + self.budget["semi"]["steps"] if arm == "supervised_long" else None
        model, cfg = self.model_cfg(arm != "burn_in_scratch"), self.burn_cfg(seed, steps)
        out = self.run_dir(seed, arm, params_hash({"model": model, "burn_in": cfg, "data": self.data_sum}))
        if train:
            train_supervised(self.index, self.split(seed).labeled, out, model, cfg, self.tracking, progress=False,
                             run_name=f"{arm} s{seed}")
        return out

    def semi(self, seed: int, arm: str, train: bool = True) -> Path:
        """The run folder of a semi-supervised arm, trained first (with its burn-in) unless ``train`` is False."""
        from semires.candidates.store import CandidateStore
        from semires.train.semi import train_semi

        burn = self.supervised(seed, "burn_in", train)
        refine_cfg, extra = SEMI_ARMS[arm]
        cfg = self.semi_cfg(seed, extra)
        out = self.run_dir(seed, arm, params_hash({"burn": burn.name, "semi": semi_key(cfg), "refine": refine_cfg}))
        if not train:
            return out
        sp = self.split(seed)
        source = None if refine_cfg.strategy == "none" else CandidateStore(self.candidates(), cache_size=256)
        train_semi(self.index, sp.labeled, sp.unlabeled, burn / "best.safetensors", out, cfg, refine_cfg, source,
                   tracking=self.tracking, progress=False, run_name=f"semi {arm} s{seed}")
        return out

    def candidates(self) -> Path:
        """The embedded generator's candidates of every train image (built once)."""
        from semires.candidates import CandidatesConfig, build_generator, generate_shard, merge
        from semires.candidates.store import MANIFEST

        out = self.work / "candidates"
        if not (out / MANIFEST).is_file():
            generate_shard(self.index, self.index.image_ids("train"), 0, 1, out,
                           build_generator(CandidatesConfig()), progress=True)
            merge(out, 1)
        return out

    def evaluate(self, run: Path, name: str) -> dict:
        done = run / "eval" / "results.json"
        if done.is_file():
            return io.read_json(done)["splits"]
        with Tracker(self.tracking, run / "eval").run(f"eval {name}", {"semires.bench": "gain"}) as trk:
            return evaluate_checkpoint(self.index_path, run / "best.safetensors", run / "eval", splits=list(SPLITS),
                                       device="cpu", tracker=trk, overlays=4, progress=False)["splits"]

    def quality(self, seed: int, arm: str) -> dict:
        """Pseudo-labels of a burn-in teacher on the first ``quality_images`` unlabeled images, before and
        after IOM / CPI, against the truth (on-target share, refinement lift)."""
        from semires.candidates.store import CandidateStore
        from semires.pseudo.config import PseudoLabelConfig, RefineStageConfig
        from semires.pseudo.label import run_pseudo_label
        from semires.pseudo.refine_stage import run_refine

        burn = self.supervised(seed, arm)
        ids = sorted(self.split(seed).unlabeled)[: self.budget["quality_images"]]
        out = self.work / "quality" / f"{burn.name}-s{seed}"
        run_pseudo_label(self.index, ids, burn / "best.safetensors", out / "pseudo", PseudoLabelConfig(device="cpu"),
                         self.tracking, progress=False)
        store = CandidateStore(self.candidates(), cache_size=256)
        return {name: run_refine(self.index, out / "pseudo", store, out / name, RefineConfig(strategy=name, pwa=False),
                                 RefineStageConfig(overlays=16), self.tracking, progress=False)
                for name in ("iom", "cpi")}


# the semi settings before the published defaults were adopted (the first ablations' loss and views)
OLD_SEMI = {"sup_weight": 10.0, "dice_weight": 1.0, "lr": 5e-4, "ema_momentum": 0.99, "jitter_p": 0.5,
            "jitter_brightness": 0.4, "jitter_contrast": 0.4, "jitter_saturation": 0.4, "blur_sigma": (0.1, 2.0),
            "student_drop_path": 0.0, "student_word_dropout": 0.0}


def gradient_share(bench: Bench, seed: int = 0, steps: int = 300) -> Path:
    """The unlabeled term's share of the gradient in the first ``steps`` semi-supervised steps from the
    seed's burn-in, with the old settings (``OLD_SEMI``, blur in pixels) and the published ones, for the
    mean teacher and IOM+PWA; written to ``<work>/diagnostics/gradient_share.json``."""
    from semires.candidates.store import CandidateStore
    from semires.train.semi import train_semi

    burn, sp = bench.supervised(seed, "burn_in"), bench.split(seed)
    common = {**bench.common, "steps": steps, "batch_size": bench.budget["semi"]["batch_size"], "eval_every": steps,
              "val_max_expressions": 100, "overlays": 0, "seed": seed}
    source = CandidateStore(bench.candidates(), cache_size=256)
    out = {}
    for name, extra in (("old", OLD_SEMI), ("published", {})):
        for strategy in ("none", "iom"):
            run = bench.work / "diagnostics" / f"s{seed}-{name}-{strategy}"
            res = train_semi(bench.index, sp.labeled, sp.unlabeled, burn / "best.safetensors", run,
                             SemiConfig(**{**common, **extra}), RefineConfig(strategy=strategy, pwa=True),
                             source if strategy != "none" else None, tracking=TrackingConfig(enabled=False),
                             progress=False)
            logged = [r for r in res["train_log"] if "grad_share_unsup" in r]
            out[f"{name}/{strategy}"] = {k: round(_mean([r[k] for r in logged]), 4) for k in
                                         ("grad_share_unsup", "grad_norm_sup", "grad_norm_unsup", "grad_cosine")}
            print(f"gradient share, {name} settings, {strategy}: {out[f'{name}/{strategy}']}", flush=True)
    return io.write_json(bench.work / "diagnostics" / "gradient_share.json", out)


def run_arms(bench: Bench, arms: list[str], seeds: list[int], quality: bool) -> None:
    for seed in seeds:
        for arm in arms:
            t0 = time.perf_counter()
            run = bench.supervised(seed, arm) if arm in SUPERVISED_ARMS else bench.semi(seed, arm)
            ev = bench.evaluate(run, f"{arm} s{seed}")
            print(f"s{seed} {arm}: " + ", ".join(f"{s} {ev[s]['mIoU']:.1f}" for s in SPLITS)
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
            if quality and arm in ("burn_in_scratch", "burn_in"):
                q = bench.quality(seed, arm)
                print(f"s{seed} {arm} pseudo-labels: on target "
                      f"{100 * q['iom']['groups']['on_target']['n'] / max(1, q['iom']['n']):.1f} %, IOM "
                      f"{q['iom']['before']['mIoU']:.1f} -> {q['iom']['after']['mIoU']:.1f}", flush=True)


def collect(bench: Bench, ratio_folder: bool = False) -> dict:
    """Every finished run of the work folder: {arm: {seed: {"eval", "train_s", "semi"}}}."""
    found: dict[str, dict[int, dict]] = {}
    if ratio_folder:
        prefix = f"{ratio_name(bench.ratio)}_s"
        seeds = sorted(int(d.name[len(prefix):]) for d in (bench.work / "runs").glob(prefix + "*"))
    else:
        seeds = sorted(int(d.name[1:]) for d in (bench.work / "runs").glob("s*") if d.name[1:].isdigit())
    for seed in seeds:
        for arm in LABELS:
            run = (bench.supervised(seed, arm, train=False) if arm in SUPERVISED_ARMS
                   else bench.semi(seed, arm, train=False))
            ev = run / "eval" / "results.json"
            if not ev.is_file():
                continue
            m = io.read_json(run / "metrics.json")
            found.setdefault(arm, {})[seed] = {"eval": io.read_json(ev)["splits"], "train_s": m.get("train_s"),
                                               "steps": m.get("steps"), "train_log": m.get("train_log"),
                                               "history": m.get("history")}
    return found


def _cell(xs: list[float], signed: bool = False) -> str | None:
    if not xs:
        return None
    m = f"{_mean(xs):+.1f}" if signed else f"{_mean(xs):.1f}"
    return f"{m} ± {_std(xs):.1f}" if len(xs) > 1 else m


def _train_summary(run: dict) -> dict:
    """Mechanism numbers of a semi run from its training log: the unlabeled term's share of the gradient
    and the teacher's on-target share, over its first and last tenth."""
    log = run.get("train_log") or []
    if not log:
        return {}
    k = max(1, len(log) // 10)
    out = {}
    for key in ("grad_share_unsup", "pseudo_on_target", "pseudo_iou_refined", "match_rate"):
        first, last = [r[key] for r in log[:k] if key in r], [r[key] for r in log[-k:] if key in r]
        if first and last:
            out[key] = [round(_mean(first), 3), round(_mean(last), 3)]
    return out


def arm_rows(runs: dict) -> list[list]:
    """One row per arm: mean ± spread over seeds per split, and val deltas paired by seed: over the
    burn-in, the step-matched supervised run, and the plain mean teacher with the same loss balance
    (``mt`` for a variant, ``mt/<screen>`` for a screen): what refinement adds."""
    def per_seed(arm):
        return {s: r["eval"]["val"]["mIoU"] for s, r in runs.get(arm, {}).items()}

    base, long_ = per_seed("burn_in"), per_seed("supervised_long")
    rows = []
    for arm, label in LABELS.items():
        if arm not in runs:
            continue
        seeds = sorted(runs[arm])
        cells = [_cell([runs[arm][s]["eval"][split]["mIoU"] for s in seeds]) for split in SPLITS]
        deltas = [None, None, None]
        if arm not in SUPERVISED_ARMS:
            screen = arm.partition("/")[2]
            mt = per_seed("mt/" + screen if screen else "mt") if not arm.startswith("mt") else {}
            deltas = [_cell([runs[arm][s]["eval"]["val"]["mIoU"] - ref[s] for s in seeds if s in ref], signed=True)
                      if ref else None for ref in (base, long_, mt)]
        rows.append([label, ",".join(map(str, seeds)), *cells, *deltas])
    return rows


def pseudo_label_table(bench: Bench, seed: int) -> list[list]:
    """The burn-in teachers' pseudo-labels on the quality subset, as the stages would refine them:
    mIoU against the truth and the on-target share (IoU >= 0.5), per refinement, for the teacher from
    scratch and the one from the pretrained backbone. "ref consensus" averages the teacher's
    probabilities over every sentence of the ref before refining."""
    from semires.candidates.store import CandidateStore
    from semires.engine.transforms import resize_mask
    from semires.pseudo.shards import PseudoStore
    from semires.refine import CandidateBatch, refine

    store_c = CandidateStore(bench.candidates(), cache_size=64)
    variants = {"teacher": (RefineConfig(strategy="none", pwa=False), False),
                "+IOM": (RefineConfig(strategy="iom", pwa=False), False),
                "+CPI": (RefineConfig(strategy="cpi", pwa=False), False),
                "soft IoU": (RefineConfig(strategy="soft_iom", pwa=False), False),
                "ref consensus": (RefineConfig(strategy="none", pwa=False), True),
                "ref consensus + soft IoU": (RefineConfig(strategy="soft_iom", pwa=False), True)}
    rows = []
    for arm in ("burn_in_scratch", "burn_in"):
        qdir = bench.work / "quality" / f"{bench.supervised(seed, arm, train=False).name}-s{seed}" / "pseudo"
        if not qdir.is_dir():
            continue
        store = PseudoStore(qdir)
        by_ref: dict[int, list] = {}
        keys = store.keys()
        for key in keys:
            by_ref.setdefault(key[0], []).append(key)
        ious = {v: [] for v in variants}
        for ref_id, keys in sorted(by_ref.items()):
            size = store.image_size
            truth = torch.from_numpy(resize_mask(bench.index.ref_mask(ref_id), size))
            prob = torch.stack([torch.from_numpy(store.get(k)[0]).float() / 255 for k in keys])
            cands = torch.as_tensor(store_c.masks(bench.index.refs[ref_id]["image_id"], (size, size))).bool()
            batch = CandidateBatch.from_list([cands] * len(keys), size=(size, size))
            for name, (cfg, consensus) in variants.items():
                p = prob.mean(0, keepdim=True).expand_as(prob) if consensus else prob
                label = refine(p > 0.5, p, batch, cfg).label
                inter = (label & truth).flatten(1).sum(1).double()
                union = (label | truth).flatten(1).sum(1).double()
                ious[name] += (inter / union.clamp(min=1)).tolist()
        for name, xs in ious.items():
            a = torch.tensor(xs)
            rows.append(["backbone from scratch" if arm == "burn_in_scratch" else "pretrained backbone", name, len(xs),
                         round(100 * float(a.mean()), 1), round(100 * float((a >= 0.5).double().mean()), 1)])
    return rows


GROUNDING_IMAGES = 300  # unlabeled images (seed 0) whose pseudo-labels grounding_report scores
GROUNDING_RULES = ("teacher", "soft IoU", "ref consensus + soft IoU", "ref consensus + competition + soft IoU")


def grounding_rows(bench: Bench, teachers: dict[str, Path], n_images: int) -> list[list]:
    """Pseudo-labels of the given teachers on every expression of the first ``n_images`` unlabeled
    images (seed 0), by rule: mIoU and on-target share (IoU >= 0.5) against the truth, and the grounded
    share: the annotated object of the image that the label overlaps most (by IoU) is the referred
    one, whatever the mask's shape. Competition: every ref's consensus probability against those of
    the image's other refs (``semi.ref_competition``, all of them here)."""
    from semires.candidates.store import CandidateStore
    from semires.engine.checkpoint import load_model
    from semires.engine.dataset import ExpressionDataset
    from semires.engine.transforms import resize_mask
    from semires.eval.metrics import intersection_union, iou_from_counts
    from semires.models import load_tokenizer
    from semires.pseudo.predict import compete, teacher_predict
    from semires.refine import CandidateBatch, refine

    soft = RefineConfig(strategy="soft_iom", pwa=False)
    store = CandidateStore(bench.candidates(), cache_size=8)
    ix = bench.index
    ids = sorted(bench.split(0).unlabeled)[:n_images]
    rows = []
    for name, path in teachers.items():
        model, cfg, info = load_model(path)
        size = int(info.get("image_size") or bench.budget["burn_in"]["image_size"])
        tok = load_tokenizer(cfg.text_encoder)
        scores = {rule: {"iou": [], "grounded": [], "fit": []} for rule in GROUNDING_RULES}
        for image_id in ids:
            exprs = ix.expressions(None, [image_id])
            batch = ExpressionDataset(ix, exprs, tok, size, cfg.max_tokens, cache_images=False)[list(range(len(exprs)))]
            prob, pseudo = teacher_predict(model, batch["image"], batch["input_ids"], batch["attention_mask"])
            refs = sorted({e.ref_id for e in exprs})
            of_ref = torch.tensor([refs.index(e.ref_id) for e in exprs])
            cons = torch.stack([prob[of_ref == j].mean(0) for j in range(len(refs))])          # (R, S, S)
            others = torch.stack([cons[[o for o in range(len(refs)) if o != j]] for j in range(len(refs))]) \
                if len(refs) > 1 else cons.new_zeros(1, 0, size, size)
            claimed = compete(cons, others, torch.ones(others.shape[:2], dtype=torch.bool))
            cands = torch.as_tensor(store.masks(image_id, (size, size))).bool()
            cb = CandidateBatch.from_list([cands] * len(exprs), size=(size, size))
            labels = {"teacher": pseudo}
            for rule, p in (("soft IoU", prob), ("ref consensus + soft IoU", cons[of_ref]),
                            ("ref consensus + competition + soft IoU", claimed[of_ref])):
                labels[rule] = refine(p > 0.5, p, cb, soft).label
            truth = torch.stack([torch.from_numpy(resize_mask(ix.ann_mask(e.ann_id), size)) for e in exprs]).bool()
            anns = ix.image_anns(image_id)
            objects = torch.stack([torch.from_numpy(resize_mask(ix.ann_mask(a), size)) for a in anns]).bool()
            target = torch.tensor([anns.index(e.ann_id) for e in exprs])
            for rule, label in labels.items():
                i, u = intersection_union(label, truth)
                scores[rule]["iou"] += (i / u.clip(min=1)).tolist()
                scores[rule]["fit"] += iou_from_counts(*intersection_union(pseudo, label)).tolist()
                lab = label.flatten(1).double()
                obj = objects.flatten(1).double()
                inter = lab @ obj.T                                                              # (E, A)
                iou = inter / (lab.sum(1)[:, None] + obj.sum(1)[None, :] - inter).clamp(min=1)
                best = iou.argmax(1)
                scores[rule]["grounded"] += ((best == target) & (iou.amax(1) > 0)).tolist()
        for rule in GROUNDING_RULES:
            iou = torch.tensor(scores[rule]["iou"])
            rows.append([name, rule, len(iou), round(100 * float(iou.mean()), 1),
                         round(100 * float((iou >= 0.5).double().mean()), 1),
                         round(100 * float(torch.tensor(scores[rule]["grounded"]).double().mean()), 1),
                         round(100 * float(torch.tensor(scores[rule]["fit"]).mean()), 1)])
        print(f"grounding: {name} done", flush=True)
    return rows


def grounding_report(out_dir: Path, work: Path, threads: int) -> Path:
    """``results/gain_bench_grounding.json``: the burn-in teacher (seed 0), the kept teachers of the mean
    teacher after 18,000 steps (``cpu_long``) and of ref+soft+comp after 6,000 (seed 0 each), by
    pseudo-label rule (:func:`grounding_rows`)."""
    bench, long = Bench(work, "cpu", threads, None), Bench(work, "cpu_long", threads, None)
    teachers = {"burn-in teacher": bench.supervised(0, "burn_in", train=False) / "best.safetensors",
                "mean teacher, 18,000 steps": long.semi(0, "mt", train=False) / "best.safetensors",
                "ref+soft+comp, 6,000 steps": bench.semi(0, "ref+soft+comp", train=False) / "best.safetensors"}
    missing = [str(p) for p in teachers.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"train these runs first: {missing}")
    n = GROUNDING_IMAGES
    rows = grounding_rows(bench, teachers, n)
    return io.write_json(out_dir / "gain_bench_grounding.json", {
        "title": "What limits the pseudo-labels: the object they name (grounded) against their shape",
        "columns": ["teacher", "pseudo-label", "expressions", "mIoU", "on target %", "grounded %",
                    "teacher's mask vs label mIoU"], "rows": rows,
        "notes": (f"Seed 0; every expression of the first {n} unlabeled images; IoU with the true mask at the "
                  "teachers' 64 px. Grounded: of the image's annotated objects, the label overlaps the referred one "
                  "most. Teacher's mask vs label: IoU of the teacher's own argmax mask (one sentence, clean image) "
                  "with the label, how far the label is from what the model predicts. Soft IoU: refine.strategy "
                  "soft_iom; ref consensus: the mean probability over the ref's "
                  "sentences (semi.ref_consensus); competition: a pixel stays in a ref's consensus only where no "
                  "other ref of the image has a higher one (semi.ref_competition). Candidates: the embedded "
                  "generator."),
        "machine": describe("cpu", threads), "date": dt.date.today().isoformat()})


def carried_over(path: Path, bench: Bench, runs: dict) -> dict:
    """The runs of an earlier report at ``path`` (another machine's work folder) that this work folder
    lacks, when both measured the same data with the same budget: results accumulate across machines
    and sessions, and a run finished here replaces the earlier one of its arm and seed. The data is
    the same when its checksum is, or when every run found in both scored identically on every split."""
    if not path.is_file():
        return {}
    old = io.read_json(path)
    # the same images and masks: the same files, or (a new file format of the same data, e.g. RLE
    # rewritten as polygons) every run measured in both places scored exactly the same
    overlap = [(r, runs[r["arm"]][r["seed"]]) for r in old.get("raw", []) if r["seed"] in runs.get(r["arm"], {})]
    same_data = old.get("data_checksum") == bench.data_sum or (
        bool(overlap) and all(r["eval"] == mine["eval"] for r, mine in overlap))
    same = same_data and old.get("budget_settings") == json.loads(json.dumps(bench.budget))
    if not same:
        print(f"{path}: measured other data or another budget; its runs are not carried over", flush=True)
        return {}
    out: dict[str, dict[int, dict]] = {}
    for r in old.get("raw", []):
        if r["seed"] not in runs.get(r["arm"], {}):
            out.setdefault(r["arm"], {})[r["seed"]] = {"eval": r["eval"], "train_s": r["train_s"],
                                                       "steps": r["steps"], "mechanism": r.get("mechanism", {}),
                                                       "carried": True}
    return out


def val_curves(runs: dict, seed: int = 0) -> dict[str, list[list[float]]]:
    """Per arm, the kept model's val mIoU (on ``val_max_expressions``) at each evaluation of its run:
    [[step, mIoU], ...], counting the burn-in's steps in for the semi-supervised arms."""
    offset = None
    if seed in runs.get("burn_in", {}) and runs["burn_in"][seed].get("steps"):
        offset = runs["burn_in"][seed]["steps"]
    out = {}
    for arm, by_seed in runs.items():
        hist = (by_seed.get(seed) or {}).get("history")
        if not hist or arm == "burn_in_scratch":
            continue
        shift = (offset or 0) if arm not in SUPERVISED_ARMS else 0
        out[arm] = [[h["step"] + shift, round(h["mIoU"], 2)] for h in hist]
    return out


def report(bench: Bench, out_dir: Path) -> list[Path]:
    name = "gain_bench" if bench.budget_name == "cpu" else f"gain_bench_{bench.budget_name}"
    runs = collect(bench)
    for arm, by_seed in carried_over(out_dir / f"{name}.json", bench, runs).items():
        runs.setdefault(arm, {}).update(by_seed)
    if not runs:
        raise SystemExit("no finished run in " + str(bench.work))
    b = bench.budget
    raw = [{"arm": arm, "seed": s, "eval": r["eval"], "train_s": r["train_s"], "steps": r["steps"],
            "mechanism": r["mechanism"] if r.get("carried") else _train_summary(r)}
           for arm, by_seed in runs.items() for s, r in sorted(by_seed.items())]
    ratio_rows = []
    # other label ratios are rows of the headline budget's report (a derived budget shares its folder)
    for folder in [] if b.get("folder") else sorted((bench.work / "runs").glob("*pct_s*")):
        ratio = float(folder.name.split("pct_")[0]) / 100
        other = collect(Bench(bench.work.parent, bench.budget_name, bench.threads, None, ratio), ratio_folder=True)
        for row in arm_rows(other):
            ratio_rows.append([f"{100 * ratio:g}%", *row[:3], row[5], row[6]])
    sp = bench.split(0)
    n_expr = len(bench.index.expressions("train", sp.labeled))
    doc = {"title": f"SemiRES gain at RefCOCO's 1 % label budget (RefShapes 'headline', CPU, "
                    f"{b['semi']['steps']:,}-step semi-supervised runs)",
           "columns": ["variant", "seeds", "val mIoU", "testA mIoU", "testB mIoU", "val vs burn-in",
                       "val vs step-matched supervised", "val vs mean teacher (same loss balance)"],
           "rows": arm_rows(runs), "raw": raw, "ratio_rows": ratio_rows, "budget": bench.budget_name,
           # the README's headline shows the variants, and a loss-balance screen ("<arm>/<screen>") once
           # it has three seeds
           "headline_variants": [LABELS[a] for a in LABELS if a in runs and ("/" not in a or len(runs[a]) >= 3)],
           "gradient_share_first_steps": (io.read_json(bench.work / "diagnostics" / "gradient_share.json")
                                          if (bench.work / "diagnostics" / "gradient_share.json").is_file() else None),
           "budget_settings": b, "data_checksum": bench.data_sum, "val_curves_seed0": val_curves(runs),
           "notes": (f"RefShapes '{b['preset']}': {b['ratio']:.0%} of the train images labeled ({len(sp.labeled)} "
                     f"images, {n_expr} expressions; RefCOCO 1 %: 169 and 1,222), {len(sp.unlabeled)} unlabeled. "
                     f"lavt_tiny at {b['burn_in']['image_size']} px; backbone pretrained on a disjoint pool "
                     f"({b['pretrain']['num_images']} images, {b['pretrain']['steps']} steps) except the scratch row. "
                     f"Burn-in {burn_steps(b)} steps; semi-supervised {b['semi']['steps']} steps from it (online, "
                     "SemiConfig defaults: the published loss balance per strategy, CE without Dice, the burn-in's lr, "
                     "jitter on every strong view, blur relative to the side, student-only noise, EMA time "
                     "constant a tenth of the run); step-matched supervised "
                     f"{burn_steps(b) + b['semi']['steps']} steps. Candidates: the embedded generator, not SAM. "
                     "Kept model: EMA teacher (semi) or checkpoint (supervised) by val oIoU; scores on every "
                     "expression. Mean ± standard deviation over label-split seeds; deltas paired by seed."),
           "machine": describe("cpu", bench.threads) + " (two runs at a time, shared machine)",
           "date": dt.date.today().isoformat()}
    paths = [io.write_json(out_dir / f"{name}.json", doc)]
    if doc["val_curves_seed0"]:
        from semires.viz import save_curves

        paths.append(save_curves(out_dir / f"{name}_curves.png",
                                 {LABELS[a]: pts for a, pts in doc["val_curves_seed0"].items()},
                                 title="The runs' val curves, seed 0 (semi-supervised: after the burn-in)",
                                 ylabel=f"val mIoU (first {b['burn_in'].get('val_max_expressions', 'all')} "
                                        "expressions)"))
    if ratio_rows:
        paths.append(io.write_json(out_dir / f"{name}_ratios.json", {
            "title": "SemiRES against supervised-only at other label ratios (headline preset)",
            "columns": ["labeled", "variant", "seeds", "val mIoU", "val vs burn-in",
                        "val vs step-matched supervised"],
            "rows": ratio_rows,
            "notes": (f"The share of the {len(sp.labeled) + len(sp.unlabeled)} train images labeled (1 %: about 42 "
                      "images; 100 %: every train image, the upper bound of supervised training at the step-matched "
                      "budget); the rest is the unlabeled pool. Same protocol, backbone and budgets as the "
                      "headline table (4 %); one label-split seed unless the seeds column says otherwise."),
            "machine": doc["machine"], "date": doc["date"]}))
    rows = pseudo_label_table(bench, 0)
    if rows:
        paths.append(io.write_json(out_dir / f"{name}_pseudo_labels.json", {
            "title": "Pseudo-labels of the burn-in teachers against the truth, by refinement (headline budget)",
            "columns": ["burn-in teacher", "pseudo-label", "expressions", "mIoU", "on target %"], "rows": rows,
            "notes": (f"Seed 0; every expression of the first {b['quality_images']} unlabeled images; IoU with the "
                      "true mask at 64 px. 'On target': IoU >= 0.5 (the referred object, not another one). +IOM / "
                      "+CPI: the paper's rules (IoU > 0.5; cover or inside > 0.7); soft IoU: refine.strategy "
                      "soft_iom (the candidate of highest soft IoU with the probabilities, not in SemiRES); ref "
                      "consensus: the teacher's probabilities averaged over the ref's sentences (semi.ref_consensus). "
                      "Candidates: the embedded generator, not SAM. Unmatched samples keep the pseudo-mask."),
            "machine": describe("cpu", bench.threads), "date": dt.date.today().isoformat()}))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    ap.add_argument("--arms", default="")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--quality", action="store_true", help="score the burn-in teachers' pseudo-labels too")
    ap.add_argument("--report", action="store_true", help="write results/gain_bench.json from finished runs")
    ap.add_argument("--grounding", action="store_true", help="write results/gain_bench_grounding.json: which "
                    "object the teachers' pseudo-labels name, by rule (needs the seed-0 burn-in and cpu_long mt)")
    ap.add_argument("--gradient-share", action="store_true",
                    help="measure the unlabeled term's share of the gradient, old against published settings")
    ap.add_argument("--work", type=Path, default=Path("/tmp/semires_gain"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ratio", type=float, default=None, help="label ratio (default: the budget's, 4 %% on 'cpu'); "
                    "--report adds every other ratio's finished runs as rows of their own")
    ap.add_argument("--mlflow-uri", default=None)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(LABELS)
    if unknown:
        ap.error(f"unknown arms {sorted(unknown)}; choose from {list(LABELS)}")
    bench = Bench(args.work, args.budget, args.threads, args.mlflow_uri, args.ratio)
    run_arms(bench, arms, [int(s) for s in args.seeds.split(",")], args.quality)
    if args.gradient_share:
        print("wrote", gradient_share(bench))
    if args.grounding:
        print("wrote", grounding_report(args.out_dir, args.work, args.threads))
    if args.report:
        for path in report(bench, args.out_dir):
            print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
