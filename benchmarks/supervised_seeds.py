"""Compare settings of the 100 % supervised run over several seeds, side by side.

A single 100 % run says little: two seeds of the same setting differ by up to 3.5 val mIoU, and
even the same seed moves by 2 when only the float rounding changes. This script collects the
100 % rows of several ``supervised_bench.py --ratios 1.0 --out FILE`` runs into groups (one
group per setting), and writes one table with every run and, per group, the mean scores, the
median wall time (one run slowed by other work does not move it) and the range of val mIoU::

    python benchmarks/supervised_seeds.py --group "subpixel head=a.json,b.json,c.json" \\
        --group "without=d.json,e.json" --out benchmarks/results/supervised_bench_seeds.json

The results keep each run's raw 100 % record, so the table can be re-rendered (``--render``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from semires import io

COLUMNS = ["setting", "seed", "steps", "val mIoU", "val oIoU", "testA mIoU", "testB mIoU", "wall (min)",
           "train images/s"]


def full_row(doc: dict, path: Path) -> dict:
    """The 100 % record of a supervised_bench results document (read from ``path``); a clear error
    when it has none."""
    rows = [r for r in doc.get("raw", []) if r.get("ratio", 0) >= 1.0]
    if not rows:
        raise SystemExit(f"{path}: no 100 % run in 'raw' (write it with supervised_bench.py --ratios 1.0 --out)")
    return rows[0]


def _schedule(r: dict) -> str:
    c = r["config"]
    return f"{r['steps']} ({c['epochs']} x {c['steps_per_epoch']})" if c.get("steps_per_epoch") else \
        f"{r['steps']} ({c['epochs']} epochs)"


def table(groups: dict[str, list[dict]]) -> list[list]:
    """One row per run, then one summary row per group with several runs (mean scores, median wall)."""
    rows = []
    for label, runs in groups.items():
        for r in sorted(runs, key=lambda r: r["config"].get("seed", 0)):
            ev = r["eval"]
            rows.append([label, r["config"].get("seed", 0), _schedule(r), round(ev["val"]["mIoU"], 1),
                         round(ev["val"]["oIoU"], 1), round(ev["testA"]["mIoU"], 1), round(ev["testB"]["mIoU"], 1),
                         round(r["wall_s"] / 60, 1), r.get("train_images_per_s")])
        if len(runs) > 1:
            def mean(split: str, runs=runs) -> float:
                return round(statistics.mean(r["eval"][split]["mIoU"] for r in runs), 1)

            val = [r["eval"]["val"]["mIoU"] for r in runs]
            rows.append([f"**{label}: mean of {len(runs)} (median wall)**", "", "", mean("val"), "", mean("testA"),
                         mean("testB"), round(statistics.median(r["wall_s"] for r in runs) / 60, 1),
                         f"val {min(val):.1f}-{max(val):.1f}"])
    return rows


def build(groups: dict[str, list[dict]], notes: str, machine: str, date: str) -> dict:
    # raw as a list: the results writer sorts mapping keys, and the groups keep the order given
    return {"title": "The 100 % supervised run over seeds, by setting", "columns": COLUMNS, "rows": table(groups),
            "raw": [{"setting": k, "runs": v} for k, v in groups.items()], "notes": notes, "machine": machine,
            "date": date}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", action="append", default=[], metavar="LABEL=FILE[,FILE...]",
                    help="a setting and the supervised_bench results files of its runs (repeatable, in table order)")
    ap.add_argument("--notes", default="", help="what the settings are and how the runs were made")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--render", action="store_true", help="re-render --out from its raw records")
    args = ap.parse_args()
    if args.render:
        doc = json.loads(args.out.read_text())
        groups = {g["setting"]: g["runs"] for g in doc["raw"]}
        io.write_json(args.out, build(groups, args.notes or doc["notes"], doc["machine"], doc["date"]))
        return
    groups, first = {}, None
    for spec in args.group:
        label, _, files = spec.partition("=")
        if not files:
            raise SystemExit(f"--group {spec!r}: expected LABEL=FILE[,FILE...]")
        docs = [(json.loads(Path(f).read_text()), Path(f)) for f in files.split(",")]
        groups[label] = [full_row(doc, path) for doc, path in docs]
        first = first or docs[0][0]
    if not groups:
        raise SystemExit("give at least one --group")
    io.write_json(args.out, build(groups, args.notes, first["machine"], first["date"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
