"""Helpers of the pipeline tests: the static import graph of the project (ast only; nothing is
imported or run) and the tests' params file."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def module_file(name: str) -> Path | None:
    """The file of a project module (``semires.x.y`` or ``components.z``), or None for others."""
    if not name.startswith(("semires", "components")):
        return None
    base = ROOT / Path(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: set[str] = set()
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join([*parts, mod]) if mod else ".".join(parts)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return out


def project_files(entry: str, module_level_only: bool = False) -> set[Path]:
    """Every project file that module ``entry`` imports, transitively (package __init__ files too).

    ``module_level_only``: follow only imports at module level, except in ``entry`` itself, whose
    function-level imports (a component's library calls) count too.
    """
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            f = module_file(".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(_imports(f, module_level_only and name != entry))
    return seen


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, recursively for nested sections."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merged_test_params() -> dict:
    """The repository's params.yaml with the tests' small budget (params_test.yaml) merged in; every key
    dvc.yaml lists stays present."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merge(base, yaml.safe_load((ROOT / "tests/pipeline/params_test.yaml").read_text()))
