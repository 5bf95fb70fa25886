"""Build the fault-case table (``benchmarks/results/fault_cases.json``) from a run of the fault suite.

    .venv/bin/python tests/faults/make_table.py [--before COMMIT] [--out benchmarks/results/fault_cases.json]

Runs ``pytest tests/faults`` with ``SEMIRES_FAULT_TABLE`` set (each case records its class, what was done,
the entry point, the exit code and the error line; see ``tests/faults/conftest.py``). With ``--before``,
the same tests also run against the tree of COMMIT (exported with ``git archive`` to a temporary folder,
this suite copied in), and each case gets ``failed_before``: whether it failed on that code, i.e. whether
it demonstrates a fix. The JSON is the source of the README's reliability table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "tests/faults"


def run_suite(tree: Path, table: Path) -> int:
    env = {**os.environ, "SEMIRES_FAULT_TABLE": str(table), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE], cwd=tree,
                          env=env, check=False).returncode


def before_outcomes(commit: str, work: Path) -> dict[str, dict]:
    tree = work / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    shutil.rmtree(tree / SUITE, ignore_errors=True)
    shutil.copytree(ROOT / SUITE, tree / SUITE, ignore=shutil.ignore_patterns("__pycache__"))
    table = work / "before.json"
    run_suite(tree, table)
    return {r["id"]: r for r in json.loads(table.read_text())} if table.is_file() else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="commit before the fixes: mark which cases failed there")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fault_cases.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fault-table-") as tmp:
        work = Path(tmp)
        code = run_suite(ROOT, work / "after.json")
        rows = json.loads((work / "after.json").read_text())
        before = before_outcomes(args.before, work) if args.before else None
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    for r in rows:
        r.setdefault("passed", False)
        if before is not None:
            b = before.get(r["id"])
            r["failed_before"] = True if b is None else not b.get("passed", False)
            if b is not None and b.get("message"):
                r["before_message"] = b["message"][:300]
    doc = {"suite": SUITE, "commit": head.strip(), "before_commit": args.before, "cases": len(rows),
           "passed": sum(r["passed"] for r in rows),
           "failed_before": sum(r.get("failed_before", False) for r in rows) if before is not None else None,
           "by_class": dict(sorted(Counter(r["class"] for r in rows).items())), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{args.out}: {doc['cases']} cases, {doc['passed']} passed"
          + (f", {doc['failed_before']} failed before {args.before}" if before is not None else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
