"""The import graph of semires/ (read with ast, imports inside functions included): no module imports
one that imports it back, no package imports one that imports it back, and arrows point down the floors.

Floors, lowest first (a package may import its own floor or lower, never higher):

0. core: errors, io, config, hardware, viz, services, registry, stages (the stage table: standard library only)
1. ground: data, models, refine, candidates, tracking, mlflow_ui
2. engine: the training plumbing (dataset, transforms, sampler, optimizer, runtime, ddp, checkpoints,
   the step loop) that evaluation, pseudo-labelling and the trainers stand on
3. stages: eval, pseudo, checks
4. train, pretrain, runs, pipeline
5. the command line: cli, __main__

A new package needs a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOORS = {
    **dict.fromkeys(("errors", "io", "config", "hardware", "viz", "services", "registry", "stages"), 0),
    **dict.fromkeys(("data", "models", "refine", "candidates", "tracking", "mlflow_ui"), 1),
    "engine": 2,
    **dict.fromkeys(("eval", "pseudo", "checks"), 3),
    **dict.fromkeys(("train", "runs", "pipeline", "pretrain"), 4),
    **dict.fromkeys(("cli", "__main__"), 5),
}

def _modules(top: str) -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / top).rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph(top: str, prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> modules of ``prefixes`` it imports (anywhere in the file); ``from pkg import name`` points
    at ``pkg.name`` when that is a module, else at ``pkg``."""
    mods = {**_modules("semires"), **_modules(top)}

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in _modules(top).items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith(prefixes)}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(prefixes):
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else resolve(node.module)
                            for a in node.names}
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: use absolute imports"
        graph[mod] = targets - {None, mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def package(mod: str) -> str:
    return mod.split(".")[1]


GRAPH = import_graph("semires", ("semires",))


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(GRAPH) == []


def test_every_package_has_a_floor():
    missing = sorted({package(m) for m in GRAPH if "." in m} - set(FLOORS))
    assert not missing, f"give {missing} a floor in FLOORS (tests/test_imports.py)"


def test_arrows_point_down_the_floors():
    up = {(m, t) for m, ts in GRAPH.items() if "." in m for t in ts
          if FLOORS.get(package(m), 0) < FLOORS.get(package(t), 0)}
    assert up == set(), "imports that run up a floor"


def test_no_package_imports_one_that_imports_it_back():
    pkgs: dict[str, set[str]] = {}
    for m, ts in GRAPH.items():
        if "." in m:
            pkgs.setdefault(package(m), set()).update(package(t) for t in ts)
    assert cycles({p: ts - {p} for p, ts in pkgs.items()}) == []


def test_components_import_only_the_library():
    """A component is one entry point: it imports semires/ and the shared component plumbing (_stage),
    never another component."""
    graph = import_graph("components", ("components", "semires"))
    other = {(m, t) for m, ts in graph.items() for t in ts
             if t.startswith("components") and t not in ("components", "components._stage")}
    assert other == set()
