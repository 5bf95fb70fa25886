"""Run setup: a run's params file = the base params.yaml with ``--set key.path=value`` overrides.

    python -m components.configure --base params.yaml --out runs/r1/params.yaml \
        --set pipeline.label_ratio=0.05 --set refine.strategy=cpi

Values are parsed as YAML scalars (``0.05`` a float, ``true`` a bool, ``[0.01, 0.1]`` a list).
The result is validated with :func:`semires.config.load_params` (and every registered section)
before it is written, so a typo fails here and not three stages later. Setting
``pipeline.label_ratio`` also adds the ratio to ``split.ratios`` when it is missing.
The Airflow DAG and the Kubeflow pipeline start with this step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml

from components import _stage
from semires import io
from semires.errors import SemiresError

APP = _stage.app(__doc__)


def apply_overrides(doc: dict, overrides: list[str]) -> dict:
    """Return ``doc`` with each ``a.b.c=value`` applied (nested dicts created as needed)."""
    out = yaml.safe_load(yaml.safe_dump(doc, sort_keys=False)) or {}
    for item in overrides:
        if "=" not in item:
            raise SemiresError(f"override {item!r} is not KEY=VALUE", None, "write e.g. --set refine.strategy=cpi")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SemiresError(f"override {key!r}: '{part}' is not a section", None, "check the key path")
        node[parts[-1]] = yaml.safe_load(raw)
    pipe = out.get("pipeline") or {}
    if "label_ratio" in pipe:
        split = out.setdefault("split", {})
        ratios = list(split.get("ratios") or [])
        if float(pipe["label_ratio"]) not in [float(r) for r in ratios]:
            split["ratios"] = ratios + [float(pipe["label_ratio"])] if ratios else [float(pipe["label_ratio"])]
    return out


def validate(path: Path) -> None:
    """Load ``path`` with every section model, so unknown keys and bad values fail now."""
    _stage.params(path)  # validates every section (semires.pipeline.validate_params)


@APP.command()
def main(base: Path = typer.Option(Path("params.yaml"), help="base params file"),
         out: Path = typer.Option(..., help="params file to write for this run"),
         set_: list[str] = typer.Option([], "--set", help="override KEY.PATH=VALUE (repeatable)"),
         overrides_json: str = typer.Option("[]", help="more overrides as a JSON list of KEY.PATH=VALUE strings "
                                                       "(how the Kubeflow pipeline passes its `overrides` parameter)"),
         ) -> None:
    import json

    if not base.is_file():
        raise SemiresError("params file not found", base, "pass --base with the repository's params.yaml")
    try:
        extra = json.loads(overrides_json)
    except json.JSONDecodeError as exc:
        raise SemiresError(f"--overrides-json is not JSON ({exc})", None, 'pass e.g. \'["semi.steps=500"]\'') from exc
    if not (isinstance(extra, list) and all(isinstance(x, str) for x in extra)):
        raise SemiresError("--overrides-json must be a JSON list of strings", None, 'pass e.g. \'["semi.steps=500"]\'')
    set_ = [*set_, *extra]
    doc = apply_overrides(yaml.safe_load(base.read_text()) or {}, set_)
    text = yaml.safe_dump(doc, sort_keys=False)
    with io.atomic_path(out, suffix=".yaml") as tmp:
        tmp.write_text(text)
        validate(tmp)
    typer.echo(f"run params written to {out}" + (f" ({', '.join(set_)})" if set_ else ""))


if __name__ == "__main__":
    sys.exit(_stage.cli(APP))
