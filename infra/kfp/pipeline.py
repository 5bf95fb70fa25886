"""The semires pipeline for Kubeflow Pipelines (kfp 2), built from the stage table
(``semires/stages.py``): the same component commands as dvc.yaml and the Airflow DAG, as container
components exchanging KFP artifacts (each artifact travels in the KFP artifact the table names).

    python infra/kfp/pipeline.py --image registry.example.com/semires:cuda --num-shards 8 \
        --env MLFLOW_TRACKING_URI=http://mlflow.mlops:5000 --out infra/kfp/semires_pipeline.yaml

Every step runs ``python -m components.<stage>`` (or ``python -m semires pipeline``) in the project
image; paths are KFP artifact paths. The parent MLflow run is opened by ``start-run`` and its id is
passed to each step, which exports it as ``SEMIRES_PARENT_RUN_ID``. Candidate shards are
``--num-shards`` parallel steps (fixed when compiling; the compiled ``configure`` step sets
``candidates.num_shards`` to it), joined into one store by ``candidates_merge``.
The steps the table marks ``gpu`` request a GPU (``--no-gpu`` to drop the requests).
Runtime parameters: label_ratio, strategy, pwa and extra ``overrides`` (``KEY=VALUE`` list as JSON).
"""

# no `from __future__ import annotations`: kfp reads the pipeline function's annotations as types

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ENTER = 'export SEMIRES_PARENT_RUN_ID="$0"; exec python -m "$@"'  # $0 = run id, then the module and its args


@dataclass
class Step:
    """A container step: ``python -m module`` with argv built from KFP placeholders."""

    name: str
    module: str
    inputs: list[tuple[str, str]] = field(default_factory=list)    # (name, KFP type)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    args: list = field(default_factory=list)                        # argv after the module, with placeholders
    gpu: bool = False
    memory: str = "8G"
    cpu: str = "2"


def _spec(step: Step, image: str, env: dict[str, str]) -> str:
    """The v1 component YAML of ``step`` (kfp loads and converts it to the v2 IR)."""
    spec = {
        "name": f"semires {step.name}",
        "inputs": [{"name": "parent_run_id", "type": "String"}] + [{"name": n, "type": t} for n, t in step.inputs],
        "outputs": [{"name": n, "type": t} for n, t in step.outputs],
        "implementation": {"container": {
            "image": image,
            "command": ["sh", "-c", ENTER, {"inputValue": "parent_run_id"}, step.module],
            "args": step.args,
            **({"env": env} if env else {}),
        }},
    }
    return yaml.safe_dump(spec, sort_keys=False)


def i(name: str) -> dict:
    return {"inputPath": name}


def o(name: str) -> dict:
    return {"outputPath": name}


def under(placeholder: dict, rel: str) -> dict:
    """A path inside an artifact folder."""
    return {"concat": [placeholder, f"/{rel}"]}


def load_stages():
    """The stage table, ``semires/stages.py`` of this checkout."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    try:
        from semires import stages
    finally:
        sys.path.pop(0)
    return stages


def _bundles(table, keys, kind_of) -> list[tuple[str, str]]:
    """(KFP artifact, type) for artifact keys, each KFP artifact once, in order."""
    out: dict[str, str] = {}
    for key in keys:
        name = table.artifact(key).kfp_artifact[0]
        out.setdefault(name, kind_of(name))
    return list(out.items())


def steps(num_shards: int, table=None) -> dict[str, Step]:
    """Every stage of the table as a container step, keyed by kfp task name (``candidates_<k>`` per
    shard of a sharded stage)."""
    table = table or load_stages()
    kinds: dict[str, str] = {}
    for a in table.artifacts().values():
        kinds.setdefault(a.kfp_artifact[0], a.kind)

    def path(a, written: bool, rename: dict | None = None):
        name, sub = a.kfp_artifact
        name = (rename or {}).get(name, name)
        ph = o(name) if written else i(name)
        return under(ph, sub) if sub else ph

    files = {"report": ("report", "Artifact"), "metrics": ("metrics", "Artifact"), "curve": ("curve", "Artifact")}
    out: dict[str, Step] = {}
    for st in table.STAGES:
        reads = [table.artifact(a).key for a in st.artifacts_read()]
        inputs = [("params", "Artifact"), *_bundles(table, reads, kinds.get)]
        own = [kind for kind, on in (("report", st.report), ("metrics", True), ("curve", bool(st.curve))) if on]
        res = {"gpu": st.gpu, "memory": st.memory}
        if st.shards:  # each shard writes its own artifact, which the joining stage copies in
            rename = {table.artifact(a).kfp_artifact[0]: "shard" for a in st.outputs.values()}
            for k in range(num_shards):
                args = table.command(st, lambda a, w, rename=rename: path(a, w, rename), shard=str(k), params=i("params"),
                                     file=lambda kind, rel: o(kind))[3:]
                out[f"{st.name}_{k}"] = Step(f"{st.name} {k}", st.module, inputs,
                                             [("shard", "Dataset"), *[files[f] for f in own]], args, **res)
            continue
        outputs = [*_bundles(table, [table.artifact(a).key for a in st.outputs.values()], kinds.get),
                   *[files[f] for f in own]]
        args = table.command(st, path, params=i("params"), metrics_dir=None, file=lambda kind, rel: o(kind))[3:]
        if st.joins:
            inputs += [(f"shard_{k}", "Dataset") for k in range(num_shards)]
            args = [a for k in range(num_shards) for a in ("--part", i(f"shard_{k}"))] + args
        if st.collects_metrics:
            names = [s.metrics_name or s.name for s in table.metric_stages()]
            inputs += [(f"m_{n}", "Artifact") for n in names]
            args = [a for n in names for a in ("--stage-metrics", {"concat": [f"{n}=", i(f"m_{n}")]})] + args
        out[st.name] = Step(st.name, st.module, inputs, outputs, args, **res)
    return out


def build(image: str, num_shards: int = 2, gpu: bool = True, env: dict[str, str] | None = None):
    """The kfp pipeline function (decorated with ``dsl.pipeline``)."""
    from kfp import components, dsl

    env = dict(env or {})
    table = load_stages()
    ops = {k: components.load_component_from_text(_spec(st, image, env)) for k, st in steps(num_shards, table).items()}
    configure_op = components.load_component_from_text(yaml.safe_dump({
        "name": "semires configure",
        "inputs": [{"name": "label_ratio", "type": "Float"}, {"name": "strategy", "type": "String"},
                   {"name": "pwa", "type": "Boolean"}, {"name": "overrides", "type": "String"},
                   {"name": "kfp_run", "type": "String"}],
        "outputs": [{"name": "params", "type": "Artifact"}, {"name": "run_id", "type": "String"}],
        "implementation": {"container": {
            "image": image,
            "command": ["sh", "-c",
                        ('set -e; python -m components.configure --base params.yaml --out "$0" '
                        '--set pipeline.label_ratio="$2" --set refine.strategy="$3" --set refine.pwa="$4" '
                        f'--set candidates.num_shards={num_shards} --overrides-json "$5"; '
                        'python -m semires pipeline start-run --params "$0" --name "kfp-$6" '
                        '--tag semires.kfp_run_id="$6" | tail -n 1 > "$1"'),
                        o("params"), o("run_id"), {"inputValue": "label_ratio"}, {"inputValue": "strategy"},
                        {"inputValue": "pwa"}, {"inputValue": "overrides"}, {"inputValue": "kfp_run"}],
            **({"env": env} if env else {}),
        }},
    }))
    end_op = components.load_component_from_text(yaml.safe_dump({
        "name": "semires end run",
        "inputs": [{"name": "kfp_run", "type": "String"}],
        "implementation": {"container": {
            "image": image,
            # an exit task may not depend on other tasks: it finds the parent run by its KFP run tag
            "command": ["sh", "-c",
                        'python -m semires pipeline end-run --tag semires.kfp_run_id="$0" --status auto',
                        {"inputValue": "kfp_run"}],
            **({"env": env} if env else {}),
        }},
    }))

    def resources(task, st: Step):
        task.set_cpu_limit(st.cpu).set_memory_limit(st.memory)
        if gpu and st.gpu:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        return task

    @dsl.pipeline(name="semires", description="Semi-supervised referring expression segmentation (SemiRES) pipeline")
    def semires_pipeline(label_ratio: float = 0.1, strategy: str = "soft_iom", pwa: bool = True, overrides: str = "[]"):
        with dsl.ExitHandler(end_op(kfp_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER), name="semires-run"):
            conf = configure_op(label_ratio=label_ratio, strategy=strategy, pwa=pwa, overrides=overrides,
                                kfp_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            run_id, params = conf.outputs["run_id"], conf.outputs["params"]
            st = steps(num_shards, table)
            made: dict = {}  # stage name -> its task (the list of shard tasks for a sharded stage)
            producers: dict = {}  # KFP artifact name -> the task that outputs it

            def run(key: str, **inputs):
                return resources(ops[key](parent_run_id=run_id, params=params, **inputs), st[key]).set_display_name(key)

            def wired(key: str) -> dict:
                return {n: producers[n].outputs[n] for n, _ in st[key].inputs if n in producers}

            for stage in table.STAGES:
                if stage.shards:
                    made[stage.name] = [run(f"{stage.name}_{k}", **wired(f"{stage.name}_{k}"))
                                        for k in range(num_shards)]
                    continue
                extra = {}
                if stage.joins:
                    extra |= {f"shard_{k}": t.outputs["shard"] for k, t in enumerate(made[stage.joins])}
                if stage.collects_metrics:
                    extra |= {f"m_{s.metrics_name or s.name}": made[s.name].outputs["metrics"]
                              for s in table.metric_stages()}
                task = made[stage.name] = run(stage.name, **wired(stage.name), **extra)
                for name, _ in st[stage.name].outputs:
                    producers[name] = task

    return semires_pipeline


def compile_pipeline(out: str | Path, image: str, num_shards: int = 2, gpu: bool = True,
                     env: dict[str, str] | None = None) -> Path:
    """Compile the pipeline to ``out`` (KFP IR YAML); returns the path."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(image, num_shards, gpu, env), str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="semires:cuda", help="project image (infra/docker/Dockerfile.cuda)")
    ap.add_argument("--num-shards", type=int, default=2, help="parallel candidate shards")
    ap.add_argument("--no-gpu", action="store_true", help="no GPU requests (CPU clusters)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for every step (no secrets: use "
                    "workload identity or a Kubernetes secret for AWS credentials)")
    ap.add_argument("--out", default="infra/kfp/semires_pipeline.yaml")
    a = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in a.env)
    print(compile_pipeline(a.out, a.image, a.num_shards, not a.no_gpu, env))


if __name__ == "__main__":
    main()
