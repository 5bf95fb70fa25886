"""Render the benchmark tables from ``benchmarks/results/<name>.json`` into the markdown documents.

Each results file holds ``title``, ``columns``, ``rows``, ``notes``, ``machine`` and ``date``
(plus raw numbers). A document carries ``<!-- table:<name> -->`` ... ``<!-- /table:<name> -->``
pairs; the text between them is replaced by a markdown table. Two documents are rendered:

- ``benchmarks/README.md``: every results file, one table each;
- ``README.md``: the headline table only (``headline``: supervised only against SemiRES at the
  headline label budget, with the paper's gain beside it), built from ``HEADLINE_SOURCE``.

A results file without a marker in its document is reported, and a marker without a results file
is left as it is.

Usage: python benchmarks/make_tables.py [--check]
``--check`` exits 1 when a document is not up to date (for CI or a pre-commit hook).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The results file the README's headline table is built from (gain_bench.py's format: one row per
# training arm at RefCOCO's 1 % label budget, val mIoU and the paired deltas).
HEADLINE_SOURCE = "gain_bench"
# The paper's val mIoU gain of SemiRES over its supervised baseline on RefCOCO at 1 % labels (LAVT,
# Swin-B + BERT, SAM ViT-H candidates), stated in the abstract of Yang et al., ICML 2024 (arXiv
# 2406.01451); it goes beside the SemiRES rows.
PAPER_GAIN_1PCT = "+18.64"
_SEMIRES_ROWS = ("+IOM", "+CPI", "+IOM+PWA", "+CPI+PWA")

def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return "" if v is None else str(v)


def render(result: dict) -> str:
    """Markdown for one results JSON: a table, then a line with machine, date and notes."""
    cols = result["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in result["rows"]]
    meta = f"_Measured on {result.get('machine', '?')}, {result.get('date', '?')}."
    if result.get("notes"):
        meta += f" {result['notes']}"
    return "\n".join(lines) + "\n\n" + meta + "_"


def headline(doc: dict) -> dict:
    """The README's headline table from ``gain_bench.json``: per training arm at the headline budget,
    val mIoU (mean ± spread over seeds), its gain over the burn-in (the paper's supervised baseline),
    over the step-matched supervised run and (where the report has it) over the plain mean teacher with
    the same loss balance, with the paper's gain beside the SemiRES rows."""
    c = {name: i for i, name in enumerate(doc["columns"])}
    mt = "val vs mean teacher (same loss balance)"  # absent from reports written before it
    cols = ["training (170 labeled images)", "seeds", "val mIoU", "vs burn-in", "vs step-matched supervised",
            *(["vs mean teacher (same loss balance)"] if mt in c else []), "paper's gain (RefCOCO val, 1 %)"]
    shown = doc.get("headline_variants")  # None: every row (reports written before the screens)
    rows = [[r[c["variant"]], r[c["seeds"]], r[c["val mIoU"]], r[c["val vs burn-in"]],
             r[c["val vs step-matched supervised"]], *([r[c[mt]]] if mt in c else []),
             PAPER_GAIN_1PCT if r[c["variant"]] in _SEMIRES_ROWS else None]
            for r in doc["rows"] if shown is None or r[c["variant"]] in shown]
    notes = ("RefShapes 'headline' preset, CPU model (lavt_tiny, 64 px), embedded candidate generator instead of "
             f"SAM; details in benchmarks/README.md. Source: benchmarks/results/{HEADLINE_SOURCE}.json. The "
             "paper's column: Yang et al., ICML 2024, RefCOCO val, LAVT (Swin-B + BERT) with SAM ViT-H, the "
             "abstract's +18.64 at 1 % over its supervised baseline.")
    return {"columns": cols, "rows": rows, "machine": doc.get("machine", "?"), "date": doc.get("date", "?"),
            "notes": notes}


def fault_summary(doc: dict) -> dict:
    """The README's reliability table from ``fault_cases.json`` (``tests/faults/make_table.py``): per class
    of fault, how many cases the suite holds, how many pass, and how many failed on the code before."""
    by_class: dict[str, list[int]] = {}
    for row in doc["rows"]:
        c = by_class.setdefault(row["class"], [0, 0, 0])
        c[0] += 1
        c[1] += bool(row["passed"])
        c[2] += bool(row["failed_before"])
    rows = [[name, *counts] for name, counts in sorted(by_class.items())]
    rows.append(["all", *(sum(r[i] for r in rows) for i in (1, 2, 3))])
    return {"columns": ["fault class", "cases", "pass", "failed before the fixes"], "rows": rows,
            "machine": "AMD EPYC, 2 cores", "date": f"commit {doc.get('commit', '?')}",
            "notes": (f"tests/faults (each case asserts the exit code, one error line naming the file or field, no "
                      f"partial output, earlier outputs intact); 'before' = commit {doc.get('before_commit', '?')}. "
                      "Per case: benchmarks/results/fault_cases.json, made by tests/faults/make_table.py.")}


def update(readme_text: str, results: dict[str, dict]) -> tuple[str, list[str]]:
    """Replace each marked block; returns the new text and the names without markers."""
    missing = []
    for name, res in sorted(results.items()):
        pat = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(<!-- /table:{re.escape(name)} -->)", re.DOTALL)
        if not pat.search(readme_text):
            missing.append(name)
            continue
        table = render(res)
        readme_text = pat.sub(lambda m, table=table: m.group(1) + table + "\n" + m.group(2), readme_text)
    return readme_text, missing


def load_results(results_dir: Path) -> dict[str, dict]:
    """Every ``<name>.json`` of the results folder, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}


def documents(results: dict[str, dict], root: Path = ROOT) -> dict[Path, dict[str, dict]]:
    """Which tables go into which document: the headline into README.md, every results file into
    benchmarks/README.md."""
    readme = {"headline": headline(results[HEADLINE_SOURCE])}
    if "fault_cases" in results:
        readme["fault_cases"] = fault_summary(results["fault_cases"])
    return {root / "README.md": readme,
            root / "benchmarks" / "README.md": {k: v for k, v in results.items() if k != "fault_cases"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root (README.md, benchmarks/)")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = 0
    for doc, tables in documents(load_results(args.root / "benchmarks" / "results"), args.root).items():
        old = doc.read_text()
        new, missing = update(old, tables)
        for name in missing:
            print(f"note: no '<!-- table:{name} -->' marker in {doc}", file=sys.stderr)
        if args.check:
            if new != old:
                print(f"{doc} tables are stale: run `make tables`", file=sys.stderr)
                stale = 1
            continue
        if new != old:
            doc.write_text(new)
        print(f"rendered {len(tables) - len(missing)} table(s) into {doc}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
