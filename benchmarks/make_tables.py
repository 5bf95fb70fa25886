"""Render the benchmark tables from ``benchmarks/results/<name>.json`` into the markdown documents.

Each results file holds ``title``, ``columns``, ``rows``, ``notes``, ``machine`` and ``date``
(plus raw numbers). A document carries ``<!-- table:<name> -->`` ... ``<!-- /table:<name> -->``
pairs; the text between them is replaced by a markdown table. Two documents are rendered:

- ``benchmarks/README.md``: every results file, one table each;
- ``README.md``: the headline table only (``headline``: supervised only against SemiRES per label
  budget, with the paper's gain beside it), built from the files named in ``HEADLINE_SOURCES``.

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

# The results files the README's headline table is built from (ablation_bench.py's format: one row
# per label ratio and variant). Point this at another file of that format to change the headline.
HEADLINE_SOURCES = ("ablation_bench", "ablation_bench_full")
# The paper's val mIoU gain of SemiRES over its supervised baseline on RefCOCO (LAVT, Swin-B + BERT,
# SAM ViT-H candidates), by labeled fraction: the +18.64 at 1 % is stated in the abstract of Yang et
# al., ICML 2024 (arXiv 2406.01451); the gains at other fractions are in its tables, not quoted here.
PAPER_GAIN = {"1%": "+18.64"}
_REFINED = ("+IOM", "+CPI", "+IOM+PWA", "+CPI+PWA")


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


def _budget(doc: dict) -> str:
    b = doc.get("budget_settings", {})
    burn, semi = b.get("burn_in", {}), b.get("semi", {})
    steps = burn.get("epochs", 0) * (burn.get("steps_per_epoch") or 0)
    return f"{doc.get('budget', '?')}: {burn.get('image_size', '?')} px, {steps} + {semi.get('steps', '?')} steps"


def headline(docs: list[dict]) -> dict:
    """The README's headline table from ablation-format results documents (``ablation_bench.py``).

    Per document and label ratio: val mIoU of "supervised only", of the plain mean teacher and of
    the best SemiRES variant (highest val mIoU among +IOM / +CPI, with or without +PWA), the gain of
    that variant over supervised only, and the paper's gain at that ratio where ``PAPER_GAIN`` has
    it. Ratios without a semi-supervised run say "not run". Returns a results dict for ``render``.
    """
    cols = ["labeled", "budget", "supervised only", "mean teacher", "SemiRES (best variant)", "SemiRES gain",
            "paper's gain (RefCOCO val)"]
    rows, machines, dates = [], [], []
    for doc in docs:
        c = {name: i for i, name in enumerate(doc["columns"])}
        by_ratio: dict[str, dict[str, float]] = {}
        for r in doc["rows"]:
            by_ratio.setdefault(r[c["labeled"]], {})[r[c["variant"]]] = r[c["val mIoU"]]
        for ratio, variants in by_ratio.items():
            if "supervised only" not in variants:
                continue
            sup = variants["supervised only"]
            refined = {v: x for v, x in variants.items() if v in _REFINED}
            best = max(refined, key=refined.get) if refined else None
            rows.append([ratio, _budget(doc), round(sup, 1), _fmt(variants.get("mean teacher")) or "not run",
                         f"{refined[best]:.1f} ({best})" if best else "not run",
                         f"+{refined[best] - sup:.1f}" if best else "", PAPER_GAIN.get(ratio)])
        machines += [m for m in [doc.get("machine", "?")] if m not in machines]
        dates += [d for d in [doc.get("date", "?")] if d not in dates]
    notes = ("Val mIoU on RefShapes (every val expression), CPU default model (lavt_tiny), embedded candidate "
             "generator instead of SAM; budget = input side, burn-in + semi-supervised steps. Sources: "
             + ", ".join(f"benchmarks/results/{n}.json" for n in HEADLINE_SOURCES) + ". The paper's column: Yang et al., ICML 2024, RefCOCO val, LAVT (Swin-B + BERT) with SAM "
             "ViT-H, its abstract's +18.64 at 1 %.")
    return {"columns": cols, "rows": rows, "machine": "; ".join(machines), "date": ", ".join(dates), "notes": notes}


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
    return {root / "README.md": {"headline": headline([results[n] for n in HEADLINE_SOURCES])},
            root / "benchmarks" / "README.md": results}


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
