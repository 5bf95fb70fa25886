"""The pipeline's stage graph, once: every stage, what it reads and writes, its params and its files.

This table is the single description of the pipeline. ``dvc.yaml`` is generated from it
(``python -m semires.stages --write``; a test fails when the committed file differs), the Airflow
DAG (``dags/semires_pipeline.py``) and the Kubeflow pipeline (``infra/kfp/pipeline.py``) build
their tasks and edges from it, and the report stage reads the metrics files it names. Adding a
stage is one :class:`Stage` entry in :data:`STAGES` (docs/stages.md walks through an example).

The module needs only the standard library (PyYAML for writing dvc.yaml), so the DAG and the
Kubeflow compiler load it by file path without importing the ``semires`` package or torch.

Conventions every stage follows (so the table does not repeat them):
- the command is ``python -m components.<name>`` with the options of :attr:`Stage.inputs` and
  :attr:`Stage.outputs`, then ``--report reports/checks/<name>.txt`` (when ``report``),
  ``--metrics metrics/<metrics_name>.json``, ``--curve plots/<name>.json`` (when ``curve``), and
  ``--params <the run's params file>``;
- an artifact is named once, by the stage that writes it (:class:`Out`); readers name it by key;
- the metrics file of a stage is a plain output (counts, gate statistics); the ``scores`` stage's
  metrics file is the one DVC lists as metrics (what ``dvc metrics show`` / ``dvc exp show`` lead with).
"""

from __future__ import annotations

import os
import posixpath
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Out:
    """An artifact, declared by the stage that writes it.

    ``path``: where it lies relative to a run folder (the repository root for DVC, the run folder
    for Airflow). ``param``: the params key that names it (DVC writes ``${param}``; a run's params
    may move it). ``kind``: KFP artifact type (Dataset, Model, Markdown). ``kfp``: the KFP artifact
    it travels in, and its place there (``"data/index.json"``: file ``index.json`` of artifact
    ``data``; default: its own artifact, named by the key). ``shared``: a dataset outside the run
    (the user's REFER folder): the DAG takes it from the run's params, relative to the project.
    ``dvc_out``: False where it lies inside another output (DVC outputs may not overlap).
    ``cache``: False for small text outputs DVC should leave in git's hands (the summary).
    """

    key: str
    path: str
    param: str | None = None
    kind: str = "Dataset"
    kfp: str | None = None
    shared: bool = False
    dvc_out: bool = True
    cache: bool = True

    @property
    def kfp_artifact(self) -> tuple[str, str]:
        """(KFP artifact name, path inside it; '' for the artifact itself)."""
        name, _, sub = (self.kfp or self.key).partition("/")
        return name, sub


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: a component command and its place in the graph.

    ``inputs`` / ``outputs``: option -> artifact (a key, or an :class:`Out` declaring a new one).
    ``reads``: artifacts the stage reads without an option (the images, through the index).
    ``code``: the library paths the component calls (DVC code dependencies; a test checks they
    cover its imports). ``shards``: one task per candidate shard (``--shard <k>``), with
    ``shard_files`` (relative to its output, ``{shard}`` = the shard's name) as each task's DVC
    outputs. ``joins``: the sharded stage whose shards this stage merges. ``files``: DVC outputs
    inside an artifact written piecewise (instead of the whole folder). ``collects_metrics``:
    reads every other stage's metrics file. ``scores``: its metrics file is the one DVC shows.
    """

    name: str
    params: tuple[str, ...]
    code: tuple[str, ...] = ()
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    report: bool = False
    curve: str | None = None          # title of the training curve it writes (plots/<name>.json)
    metrics_name: str | None = None   # metrics/<metrics_name>.json (default: the stage name)
    gpu: bool = False
    memory: str = "8G"
    shards: bool = False
    shard_files: tuple[str, ...] = ()
    joins: str | None = None
    files: tuple[str, ...] = ()
    collects_metrics: bool = False
    scores: bool = False

    @property
    def module(self) -> str:
        return f"components.{self.name}"

    @property
    def metrics_file(self) -> str:
        """The metrics file (``{shard}`` where the stage is sharded)."""
        if self.shards:
            return f"metrics/{self.name}/shard-{{shard}}.json"
        return f"metrics/{self.metrics_name or self.name}.json"

    @property
    def report_file(self) -> str:
        return f"reports/checks/{self.name}-{{shard}}.txt" if self.shards else f"reports/checks/{self.name}.txt"

    @property
    def curve_file(self) -> str:
        return f"plots/{self.name}.json"

    def artifacts_read(self) -> list[str]:
        return [*self.inputs.values(), *self.reads]


# Library paths most reading stages share.
_DATA = ("semires/data/splits.py", "semires/data/index.py", "semires/data/masks.py", "semires/data/refer.py",
         "semires/data/safe_pickle.py")

STAGES: tuple[Stage, ...] = (
    Stage("data", params=("data", "checks.data"), report=True,
          code=("semires/data", "semires/checks", "semires/viz.py", "semires/config.py", "semires/io.py"),
          outputs={"--refer-dir": Out("refer", "data/refshapes", "data.refer_dir", kfp="data/refshapes", shared=True),
                   "--image-dir": Out("images", "data/refshapes/images", "data.image_dir",
                                      kfp="data/refshapes/images", shared=True, dvc_out=False),
                   "--index": Out("index", "data/index.json", "data.index_path", kfp="data/index.json")}),
    Stage("split", params=("split", "checks.data"), report=True,
          code=(*_DATA, "semires/checks", "semires/config.py", "semires/io.py"),
          inputs={"--index": "index"},
          outputs={"--out": Out("splits", "data/splits", "split.out_dir")}),
    Stage("candidates", params=("candidates", "checks.candidates"), report=True, gpu=True, memory="16G",
          code=("semires/candidates", "semires/registry.py", "semires/checks", *_DATA[1:], "semires/data/splits.py",
                "semires/io.py"),
          inputs={"--index": "index"}, reads=("images",),
          outputs={"--out": Out("candidates", "data/candidates", "candidates.out_dir")},
          shards=True, shard_files=("shards/{shard}.jsonl", "entries/{shard}.json", "failures/{shard}.json",
                                    "timing/{shard}.json")),
    Stage("candidates_merge", params=("candidates.num_shards",), metrics_name="candidates",
          code=("semires/candidates", "semires/registry.py", "semires/data/masks.py"),
          joins="candidates", outputs={"--out": "candidates"},
          files=("manifest.json", "failures.json", "stats.json")),
    Stage("pretrain", params=("pretrain", "model.name", "model.channels", "model.depths", "data.synth.seed"),
          gpu=True, memory="8G",
          code=("semires/pretrain", "semires/models", "semires/engine", "semires/data", "semires/viz.py",
                "semires/config.py", "semires/io.py"),
          outputs={"--out": Out("pretrain", "models/pretrain", kind="Model")}),
    Stage("burn_in", params=("pipeline", "model", "burn_in"), gpu=True, memory="16G",
          curve="burn-in teacher on val (percent)",
          code=("semires/train", "semires/engine", "semires/models", "semires/eval", *_DATA, "semires/viz.py"),
          inputs={"--index": "index", "--splits": "splits", "--pretrained": "pretrain"}, reads=("images",),
          outputs={"--out": Out("burn_in", "models/burn_in", kind="Model")}),
    Stage("supervised", params=("pipeline", "model", "burn_in", "supervised", "semi.steps", "semi.epochs"), gpu=True,
          memory="16G", curve="step-matched supervised baseline on val (percent)",
          code=("semires/train", "semires/engine", "semires/models", "semires/eval", *_DATA, "semires/viz.py"),
          inputs={"--index": "index", "--splits": "splits", "--pretrained": "pretrain"}, reads=("images",),
          outputs={"--out": Out("supervised", "models/supervised", kind="Model")}),
    Stage("pseudo_label", params=("pipeline", "pseudo_label", "checks.labels"), report=True, gpu=True, memory="16G",
          code=("components/burn_in.py", "semires/pseudo", "semires/models", "semires/engine", "semires/checks",
                *_DATA),
          inputs={"--index": "index", "--splits": "splits", "--teacher": "burn_in"}, reads=("images",),
          outputs={"--out": Out("pseudo", "data/pseudo")}),
    Stage("refine", params=("refine", "refine_stage", "checks.labels"), report=True, memory="16G",
          code=("semires/refine", "semires/registry.py", "semires/pseudo", "semires/candidates", "semires/checks",
                "semires/eval/metrics.py", "semires/engine/transforms.py", *_DATA, "semires/viz.py"),
          inputs={"--index": "index", "--pseudo": "pseudo", "--candidates": "candidates"},
          outputs={"--out": Out("refined", "data/refined")}),
    Stage("train_student", params=("pipeline", "semi", "refine"), gpu=True, memory="32G",
          curve="student (kept EMA teacher) on val (percent)",
          code=("components/burn_in.py", "semires/train", "semires/engine", "semires/models", "semires/refine", "semires/registry.py",
                "semires/candidates",
                "semires/pseudo", "semires/eval", *_DATA, "semires/viz.py"),
          inputs={"--index": "index", "--splits": "splits", "--teacher": "burn_in", "--candidates": "candidates",
                  "--refined": "refined"}, reads=("images",),
          outputs={"--out": Out("student", "models/student", kind="Model")}),
    Stage("evaluate", params=("evaluate",), gpu=True, memory="16G",
          code=("semires/eval", "semires/models", "semires/engine", *_DATA[1:], "semires/viz.py"),
          inputs={"--index": "index", "--model": "student", "--teacher": "burn_in", "--baseline": "supervised"},
          reads=("images",),
          outputs={"--out": Out("evaluation", "eval/student")}),
    Stage("report", params=("report", "data.dataset", "data.synth.preset", "pipeline.label_ratio", "refine.strategy",
                            "refine.pwa", "candidates.generator", "model.name"),
          metrics_name="scores", collects_metrics=True, scores=True,
          code=("semires/pipeline.py", "semires/runs.py", "semires/stages.py"),
          inputs={"--student": "student", "--teacher": "burn_in", "--index": "index"},
          outputs={"--out": Out("summary", "reports/summary.md", kind="Markdown", cache=False)}),
)


# ----------------------------------------------------------------------------------------------
# Reading the table


def stage(name: str) -> Stage:
    """The stage called ``name``; KeyError naming the known ones otherwise."""
    for st in STAGES:
        if st.name == name:
            return st
    raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def artifacts() -> dict[str, Out]:
    """Every artifact the stages declare, by key."""
    out: dict[str, Out] = {}
    for st in STAGES:
        for a in st.outputs.values():
            if isinstance(a, Out):
                if a.key in out:
                    raise ValueError(f"artifact {a.key!r} is declared twice (second time by stage {st.name})")
                out[a.key] = a
    return out


def artifact(key_or_out) -> Out:
    return key_or_out if isinstance(key_or_out, Out) else artifacts()[key_or_out]


def producer(key: str) -> Stage:
    """The stage after which artifact ``key`` is complete (the last stage that writes it)."""
    found = [st for st in STAGES if any(artifact(a).key == key for a in st.outputs.values())]
    if not found:
        raise KeyError(f"no stage writes artifact {key!r}")
    return found[-1]


def upstream(st: Stage) -> list[str]:
    """The stages ``st`` waits for, in table order: producers of what it reads, the shards it
    joins, and (``collects_metrics``) every stage whose metrics it reads."""
    names = {producer(artifact(a).key).name for a in st.artifacts_read()}
    names |= {s.name for s in STAGES if st.joins and s.name == st.joins}
    if st.collects_metrics:
        names |= {s.name for s in metric_stages()}
    names.discard(st.name)
    return [s.name for s in STAGES if s.name in names]


def metric_stages() -> list[Stage]:
    """The stages whose metrics file the report reads (one file each; sharded stages are summed
    up by the stage that joins them)."""
    return [s for s in STAGES if not (s.shards or s.collects_metrics)]


def check_table() -> None:
    """Raise ValueError when the table is inconsistent: a read of an artifact that no earlier stage
    writes, a duplicate name, a join of a stage that is not sharded."""
    names = [s.name for s in STAGES]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names in {names}")
    keys = set(artifacts())
    seen: set[str] = set()
    for st in STAGES:
        for a in st.artifacts_read():
            key = a.key if isinstance(a, Out) else a
            if key not in keys:
                raise ValueError(f"stage {st.name} reads {key!r}, which no stage writes (known: {sorted(keys)})")
            if key not in seen:
                raise ValueError(f"stage {st.name} reads {key!r} before a stage writes it: order the table")
        if st.joins and not stage(st.joins).shards:
            raise ValueError(f"stage {st.name} joins {st.joins}, which is not sharded")
        seen |= {artifact(a).key for a in st.outputs.values()}


def command(st: Stage, path, shard=None, params: str = "params.yaml", metrics_dir: str | None = "metrics",
            file=None) -> list:
    """The stage's command line (``python -m components.<name> ...``) as a list of arguments.

    ``path(out, written)``: how the caller spells an artifact (DVC ``${data.index_path}``, a run
    folder path, a KFP placeholder); ``written`` is True for the stage's outputs.
    ``file(kind, rel)``: how it spells the stage's own ``report`` / ``metrics`` / ``curve`` file
    (``rel`` such as ``metrics/split.json``; default: ``rel`` as is). ``shard``: the shard
    (sharded stages). ``metrics_dir``: the folder a collecting stage reads (None: the caller
    passes the files another way).
    """
    file = file or (lambda kind, rel: rel)
    args: list = ["python", "-m", st.module]
    for written, options in ((False, st.inputs), (True, st.outputs)):
        for opt, a in options.items():
            args += [opt, path(artifact(a), written)]
    if st.shards:
        args += ["--shard", shard]
    if st.collects_metrics and metrics_dir is not None:
        args += ["--metrics-dir", metrics_dir]
    if st.report:
        args += ["--report", file("report", st.report_file.format(shard=shard))]
    args += ["--metrics", file("metrics", st.metrics_file.format(shard=shard))]
    if st.curve:
        args += ["--curve", file("curve", st.curve_file)]
    return [*args, "--params", params]


# ----------------------------------------------------------------------------------------------
# dvc.yaml

DVC_HEADER = """\
# GENERATED from semires/stages.py by `python -m semires.stages --write`: edit the table there, not
# this file (tests/pipeline/test_stages.py fails when they differ). See docs/stages.md.
#
# The semires pipeline for DVC: every stage is one component command (components/<stage>.py),
# the same command the Airflow DAG (dags/) and the Kubeflow pipeline (infra/kfp/) run.
# Paths come from params.yaml where a stage's section names them; everything else follows the
# layout data/ models/ eval/ reports/ metrics/ plots/. metrics/scores.json is the only metrics
# file (what `dvc metrics show` and `dvc exp show` list); each stage's own metrics file (counts,
# gate statistics) is a plain output beside it.
#
#   dvc repro                      # the whole chain (services optional: MLflow when MLFLOW_TRACKING_URI is set)
#   dvc repro refine               # one stage and what it needs
#   dvc exp run -S refine.strategy=cpi && dvc exp show   # an experiment, scores first
#   dvc push / dvc pull            # outputs to / from the S3 remote (see .dvc/config, infra/README.md)

"""


def shard_names(num_shards: int) -> dict[str, int]:
    """``shard-<k>-of-<n>`` -> k, as the candidate store names shards (five digits each)."""
    return {f"shard-{k:05d}-of-{num_shards:05d}": k for k in range(num_shards)}


def _dvc_path(a: Out, written: bool = False) -> str:
    return f"${{{a.param}}}" if a.param else a.path


def _plain(path: str) -> dict:
    return {path: {"cache": False}}


def dvc_stage(st: Stage) -> dict:
    """The dvc.yaml entry of ``st`` (a ``foreach`` over ``${shards}`` for a sharded stage)."""
    shard = "${item}" if st.shards else None
    body: dict = {"cmd": " ".join(map(str, command(st, _dvc_path, shard=shard)))}
    deps = [_dvc_path(artifact(a)) for a in st.artifacts_read()]
    if st.joins:
        joined = stage(st.joins)
        (out,) = [artifact(a) for a in joined.outputs.values()]
        deps += sorted({f"{_dvc_path(out)}/{posixpath.dirname(f)}" for f in joined.shard_files})
    if st.collects_metrics:
        deps += [s.metrics_file for s in metric_stages()]
    body["deps"] = [*dict.fromkeys(deps), f"components/{st.name}.py", "components/_stage.py", *st.code]
    body["params"] = list(st.params)
    outs: list = []
    for a in map(artifact, st.outputs.values()):
        if st.shards:
            outs += [f"{_dvc_path(a)}/{f.format(shard='${key}')}" for f in st.shard_files]
        elif st.files:
            outs += [f"{_dvc_path(a)}/{f}" for f in st.files]
        elif a.dvc_out:
            outs.append(_dvc_path(a) if a.cache else _plain(_dvc_path(a)))
    if st.report:
        outs.append(_plain(st.report_file.format(shard=shard)))
    metrics = _plain(st.metrics_file.format(shard=shard))
    if not st.scores:
        outs.append(metrics)
    body["outs"] = outs
    if st.scores:
        body["metrics"] = [metrics]
    if st.curve:
        body["plots"] = [_plain(st.curve_file)]
    return {"foreach": "${shards}", "do": body} if st.shards else body


def dvc_yaml(num_shards: int) -> dict:
    """The whole dvc.yaml document for ``num_shards`` candidate shards (params ``candidates.num_shards``)."""
    check_table()
    doc: dict = {"vars": [{"shards": shard_names(num_shards)}],
                 "stages": {st.name: dvc_stage(st) for st in STAGES}}
    doc["plots"] = [{f"{st.name}_val": {"title": st.curve, "x": "step", "y": {st.curve_file: ["mIoU", "oIoU"]}}}
                    for st in STAGES if st.curve]
    return doc


def dvc_yaml_text(params_path: str | Path = "params.yaml") -> str:
    """dvc.yaml as written to the repository, for the shard count of ``params_path``."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    class Folded(str):
        pass

    # commands as folded blocks (`cmd: >-`), readable at 110 columns
    Dumper.add_representer(Folded, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style=">"))
    params = yaml.safe_load(Path(params_path).read_text()) or {}
    doc = dvc_yaml(int((params.get("candidates") or {}).get("num_shards", 1)))
    for body in doc["stages"].values():
        body = body.get("do", body)
        body["cmd"] = Folded(body["cmd"])
    return DVC_HEADER + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> int:
    """``python -m semires.stages [--write | --check] [--params P] [--out dvc.yaml]``: print, write or
    check dvc.yaml against the table (exit 1 when it differs)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="dvc.yaml")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write --out")
    mode.add_argument("--check", action="store_true", help="exit 1 when --out differs from the table")
    a = ap.parse_args(argv)
    text = dvc_yaml_text(a.params)
    out = Path(a.out)
    if a.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} differs from semires/stages.py: run `python -m semires.stages --write`", file=sys.stderr)
            return 1
        print(f"{out} matches semires/stages.py")
        return 0
    if a.write:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # atomic: temp then rename
        tmp.write_text(text)
        tmp.replace(out)
        print(f"wrote {out}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
