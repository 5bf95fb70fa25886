"""Render every ``benchmarks/results/<name>.json`` into the README between its markers.

Each results file holds ``title``, ``columns``, ``rows``, ``notes``, ``machine`` and ``date``
(plus raw numbers). The README carries ``<!-- table:<name> -->`` ... ``<!-- /table:<name> -->``
pairs; the text between them is replaced by a markdown table. A results file without markers in
the README is reported, and a marker without a results file is left as it is.

Usage: python benchmarks/make_tables.py [--readme README.md] [--check]
``--check`` exits 1 when the README is not up to date (for CI or a pre-commit hook).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    results = {p.stem: json.loads(p.read_text()) for p in sorted(args.results.glob("*.json"))}
    old = args.readme.read_text()
    new, missing = update(old, results)
    for name in missing:
        print(f"note: no '<!-- table:{name} -->' marker in {args.readme}", file=sys.stderr)
    if args.check:
        if new != old:
            print(f"{args.readme} tables are stale: run `make tables`", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.readme.write_text(new)
    print(f"rendered {len(results) - len(missing)} table(s) into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
