"""The semires pipeline for Kubeflow Pipelines (kfp 2): the same component commands as dvc.yaml and
the Airflow DAG, as container components exchanging KFP artifacts.

    python infra/kfp/pipeline.py --image registry.example.com/semires:cuda --num-shards 8 \
        --env MLFLOW_TRACKING_URI=http://mlflow.mlops:5000 --out infra/kfp/semires_pipeline.yaml

Every step runs ``python -m components.<stage>`` (or ``python -m semires pipeline``) in the project
image; paths are KFP artifact paths. The parent MLflow run is opened by ``start-run`` and its id is
passed to each step, which exports it as ``SEMIRES_PARENT_RUN_ID``. Candidate shards are
``--num-shards`` parallel steps (fixed when compiling; the compiled ``configure`` step sets
``candidates.num_shards`` to it), joined into one store by ``candidates_merge``.
Candidates, training and inference steps request a GPU (``--no-gpu`` to drop the requests).
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


P = ["--params", i("params")]
DATA_IN = ("data", "Dataset")
INDEX = under(i("data"), "index.json")


def steps(num_shards: int) -> dict[str, Step]:
    """Every stage of the pipeline, keyed by stage name (the kfp task names)."""
    s = {
        "data": Step("data", "components.data", [("params", "Artifact")], [("data", "Dataset"), ("report", "Artifact"),
                                                                          ("metrics", "Artifact")],
                     ["--refer-dir", under(o("data"), "refshapes"), "--image-dir", under(o("data"), "refshapes/images"),
                      "--index", under(o("data"), "index.json"), "--report", o("report"), "--metrics", o("metrics"),
                      *P]),
        "split": Step("split", "components.split", [("params", "Artifact"), DATA_IN],
                      [("splits", "Dataset"), ("report", "Artifact"), ("metrics", "Artifact")],
                      ["--index", INDEX, "--out", o("splits"), "--report", o("report"), "--metrics", o("metrics"), *P]),
        "burn_in": Step("burn_in", "components.burn_in", [("params", "Artifact"), DATA_IN, ("splits", "Dataset")],
                        [("teacher", "Model"), ("metrics", "Artifact")],
                        ["--index", INDEX, "--splits", i("splits"), "--out", o("teacher"), "--metrics", o("metrics"),
                         *P], gpu=True, memory="16G"),
        "pseudo_label": Step("pseudo_label", "components.pseudo_label",
                             [("params", "Artifact"), DATA_IN, ("splits", "Dataset"), ("teacher", "Model")],
                             [("pseudo", "Dataset"), ("report", "Artifact"), ("metrics", "Artifact")],
                             ["--index", INDEX, "--splits", i("splits"), "--teacher", i("teacher"),
                              "--out", o("pseudo"), "--report", o("report"), "--metrics", o("metrics"), *P],
                             gpu=True, memory="16G"),
        "refine": Step("refine", "components.refine",
                       [("params", "Artifact"), DATA_IN, ("pseudo", "Dataset"), ("candidates", "Dataset")],
                       [("refined", "Dataset"), ("report", "Artifact"), ("metrics", "Artifact")],
                       ["--index", INDEX, "--pseudo", i("pseudo"), "--candidates", i("candidates"),
                        "--out", o("refined"), "--report", o("report"), "--metrics", o("metrics"), *P], memory="16G"),
        "train_student": Step("train_student", "components.train_student",
                              [("params", "Artifact"), DATA_IN, ("splits", "Dataset"), ("teacher", "Model"),
                               ("candidates", "Dataset"), ("refined", "Dataset")],
                              [("student", "Model"), ("metrics", "Artifact")],
                              ["--index", INDEX, "--splits", i("splits"), "--teacher", i("teacher"),
                               "--candidates", i("candidates"), "--refined", i("refined"), "--out", o("student"),
                               "--metrics", o("metrics"), *P], gpu=True, memory="32G"),
        "evaluate": Step("evaluate", "components.evaluate", [("params", "Artifact"), DATA_IN, ("student", "Model")],
                         [("evaluation", "Dataset"), ("metrics", "Artifact")],
                         ["--index", INDEX, "--model", i("student"), "--out", o("evaluation"), "--metrics",
                          o("metrics"), *P], gpu=True, memory="16G"),
        "report": Step("report", "components.report",
                       [("params", "Artifact"), DATA_IN, ("student", "Model")]
                       + [(f"m_{k}", "Artifact") for k in REPORTED],
                       [("summary", "Markdown"), ("metrics", "Artifact")],
                       [a for k in REPORTED for a in ("--stage-metrics", {"concat": [f"{k}=", i(f"m_{k}")]})]
                       + ["--student", i("student"), "--index", INDEX, "--out", o("summary"), "--metrics", o("metrics"),
                          *P]),
        "candidates_merge": Step("candidates_merge", "components.candidates_merge",
                                 [("params", "Artifact")] + [(f"shard_{k}", "Dataset") for k in range(num_shards)],
                                 [("candidates", "Dataset"), ("metrics", "Artifact")],
                                 [a for k in range(num_shards) for a in ("--part", i(f"shard_{k}"))]
                                 + ["--out", o("candidates"), "--metrics", o("metrics"), *P]),
    }
    for k in range(num_shards):
        s[f"candidates_{k}"] = Step(f"candidates {k}", "components.candidates", [("params", "Artifact"), DATA_IN],
                                    [("shard", "Dataset"), ("report", "Artifact"), ("metrics", "Artifact")],
                                    ["--index", INDEX, "--shard", str(k), "--out", o("shard"), "--report", o("report"),
                                     "--metrics", o("metrics"), *P], gpu=True, memory="16G")
    return s


REPORTED = ("data", "split", "candidates", "burn_in", "pseudo_label", "refine", "train_student", "evaluate")


def build(image: str, num_shards: int = 2, gpu: bool = True, env: dict[str, str] | None = None):
    """The kfp pipeline function (decorated with ``dsl.pipeline``)."""
    from kfp import components, dsl

    env = dict(env or {})
    ops = {k: components.load_component_from_text(_spec(st, image, env)) for k, st in steps(num_shards).items()}
    configure_op = components.load_component_from_text(yaml.safe_dump({
        "name": "semires configure",
        "inputs": [{"name": "label_ratio", "type": "Float"}, {"name": "strategy", "type": "String"},
                   {"name": "pwa", "type": "Boolean"}, {"name": "overrides", "type": "String"},
                   {"name": "kfp_run", "type": "String"}],
        "outputs": [{"name": "params", "type": "Artifact"}, {"name": "run_id", "type": "String"}],
        "implementation": {"container": {
            "image": image,
            "command": ["sh", "-c",
                        'set -e; python -m components.configure --base params.yaml --out "$0" '
                        '--set pipeline.label_ratio="$2" --set refine.strategy="$3" --set refine.pwa="$4" '
                        f'--set candidates.num_shards={num_shards} --overrides-json "$5"; '
                        'python -m semires pipeline start-run --params "$0" --name "kfp-$6" '
                        '--tag semires.kfp_run_id="$6" | tail -n 1 > "$1"',
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
    def semires_pipeline(label_ratio: float = 0.1, strategy: str = "iom", pwa: bool = True, overrides: str = "[]"):
        with dsl.ExitHandler(end_op(kfp_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER), name="semires-run"):
            conf = configure_op(label_ratio=label_ratio, strategy=strategy, pwa=pwa, overrides=overrides,
                                kfp_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            run_id, params = conf.outputs["run_id"], conf.outputs["params"]
            st = steps(num_shards)

            def run(key: str, **inputs):
                return resources(ops[key](parent_run_id=run_id, params=params, **inputs), st[key]).set_display_name(key)

            data = run("data")
            split = run("split", data=data.outputs["data"])
            shards = [run(f"candidates_{k}", data=data.outputs["data"]) for k in range(num_shards)]
            gather = run("candidates_merge", **{f"shard_{k}": t.outputs["shard"] for k, t in enumerate(shards)})
            teacher = run("burn_in", data=data.outputs["data"], splits=split.outputs["splits"])
            pseudo = run("pseudo_label", data=data.outputs["data"], splits=split.outputs["splits"],
                         teacher=teacher.outputs["teacher"])
            refined = run("refine", data=data.outputs["data"], pseudo=pseudo.outputs["pseudo"],
                          candidates=gather.outputs["candidates"])
            student = run("train_student", data=data.outputs["data"], splits=split.outputs["splits"],
                          teacher=teacher.outputs["teacher"], candidates=gather.outputs["candidates"],
                          refined=refined.outputs["refined"])
            evaluation = run("evaluate", data=data.outputs["data"], student=student.outputs["student"])
            done = {"data": data, "split": split, "candidates": gather, "burn_in": teacher, "pseudo_label": pseudo,
                    "refine": refined, "train_student": student, "evaluate": evaluation}
            run("report", data=data.outputs["data"], student=student.outputs["student"],
                **{f"m_{k}": done[k].outputs["metrics"] for k in REPORTED})

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
