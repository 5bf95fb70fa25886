"""Running great_expectations suites on pandas tables, and the readable gate report.

A *gate* is a named set of tables, each a pandas DataFrame with an id column and a list of GX
expectations. :func:`run_gate` validates every table in one ephemeral GX context (nothing is
written by GX itself), turns the results into a :class:`CheckReport`, writes the report, and raises
:class:`semires.errors.CheckFailed` when any expectation failed.

great_expectations is imported lazily (it takes seconds), so importing this module is cheap.
Large ``value_set`` arguments make GX very slow (seconds per 100k values), so referential checks
are written as a boolean column computed in pandas (``*_known``) and expected to be all True.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semires import io
from semires.errors import CheckFailed

MAX_FAILING_IDS = 10  # ids shown per failed expectation; the JSON report keeps the same few


@dataclass(frozen=True)
class Table:
    """One DataFrame to validate.

    Attributes:
        name: table name shown in the report (``refs``, ``split 1pct``...).
        frame: the pandas DataFrame; one row per entity.
        id_column: the column that identifies a row; failing rows are reported by it.
        expectations: GX expectation objects (``gx.expectations.Expect*``); each should carry a
            ``description`` saying in words what it asserts.
    """

    name: str
    frame: Any
    id_column: str
    expectations: Sequence[Any]


@dataclass
class Outcome:
    """The result of one expectation on one table."""

    table: str
    expectation: str
    description: str
    kwargs: dict
    success: bool
    observed: str = ""
    unexpected_count: int | None = None
    element_count: int | None = None
    failing_ids: list = field(default_factory=list)
    error: str = ""

    def line(self) -> str:
        head = f"{'PASS' if self.success else 'FAIL'} [{self.table}] {self.description or self.expectation}"
        if self.success:
            return head
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        out = [head, f"       expectation: {self.expectation}({args})"]
        if self.error:
            out.append(f"       error: {self.error}")
        if self.unexpected_count is not None:
            pct = 100.0 * self.unexpected_count / max(1, self.element_count or 0)
            out.append(f"       {self.unexpected_count} of {self.element_count} rows unexpected ({pct:.1f}%)")
        if self.observed:
            out.append(f"       observed: {self.observed}")
        if self.failing_ids:
            out.append(f"       failing ids: {', '.join(str(i) for i in self.failing_ids)}"
                       + (" ..." if (self.unexpected_count or 0) > len(self.failing_ids) else ""))
        return "\n".join(out)


@dataclass
class CheckReport:
    """All outcomes of one gate; ``str()`` is a one-line summary, :meth:`to_text` the full report."""

    gate: str
    subjects: dict
    outcomes: list[Outcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        n, bad = len(self.outcomes), len(self.failures)
        status = f"passed: {n}" if bad == 0 else f"FAILED: {bad} of {n}"
        return f"data check '{self.gate}' {status} expectations on {len({o.table for o in self.outcomes})} tables"

    def __str__(self) -> str:
        return self.summary()

    def to_text(self) -> str:
        lines = [self.summary()]
        lines += [f"  {k}: {v}" for k, v in self.subjects.items()]
        # failures first: they are what a reader opened the report for
        lines += [o.line() for o in self.failures] + [o.line() for o in self.outcomes if o.success]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"gate": self.gate, "success": self.success, "subjects": self.subjects,
                "n_expectations": len(self.outcomes), "n_failed": len(self.failures),
                "outcomes": [asdict(o) for o in self.outcomes]}

    def write(self, path: str | Path) -> Path:
        """Write the report atomically: JSON when ``path`` ends in ``.json``, readable text otherwise."""
        path = Path(path)
        if path.suffix == ".json":
            return io.write_json(path, _jsonable(self.to_dict()))
        return io.write_text(path, self.to_text())


_CONTEXT: Any = None


def _context():
    """One quiet ephemeral GX context per process (in-memory stores, no progress bars)."""
    global _CONTEXT
    if _CONTEXT is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        cfg = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                                progress_bars=ProgressBarsConfig(globally=False), analytics_enabled=False)
        _CONTEXT = gx.get_context(project_config=cfg, mode="ephemeral")
    return _CONTEXT


def _batch(frame):
    """A GX batch over ``frame`` (a fresh dataframe asset each call, so names never clash)."""
    ctx = _context()
    try:
        source = ctx.data_sources.get("semires")
    except (KeyError, ValueError):
        source = ctx.data_sources.add_pandas("semires")
    asset = source.add_dataframe_asset(f"table-{len(source.assets)}")
    return asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})


def validate_table(table: Table) -> list[Outcome]:
    """Validate one table; returns one :class:`Outcome` per expectation (in order)."""
    import great_expectations as gx

    if not table.expectations:
        return []
    batch = _batch(table.frame)  # creates the context, which the suite needs
    suite = gx.ExpectationSuite(name=f"semires-{table.name}")
    for exp in table.expectations:
        suite.add_expectation(exp)
    id_cols = [table.id_column] if table.id_column in table.frame.columns else []
    result = batch.validate(suite, result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": id_cols,
        "partial_unexpected_count": MAX_FAILING_IDS})
    return [_outcome(table, r) for r in result.results]


def _outcome(table: Table, r) -> Outcome:
    cfg = r.expectation_config
    kwargs = {k: _short(v) for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    res = r.result or {}
    error = ""
    if r.exception_info and r.exception_info.get("raised_exception"):
        error = str(r.exception_info.get("exception_message"))
    ids = []
    for entry in (res.get("unexpected_index_list") or [])[:MAX_FAILING_IDS]:
        ids.append(_scalar(entry.get(table.id_column)) if isinstance(entry, dict) else _scalar(entry))
    ids = list(dict.fromkeys(ids))  # a duplicated id fails once per row; name it once
    if not ids and res.get("partial_unexpected_list"):
        ids = [_scalar(v) for v in res["partial_unexpected_list"][:MAX_FAILING_IDS]]
    observed = res.get("observed_value")
    return Outcome(table=table.name, expectation=cfg.type, description=cfg.description or "", kwargs=kwargs,
                   success=bool(r.success), observed="" if observed is None else str(_short(_scalar(observed))),
                   unexpected_count=res.get("unexpected_count"), element_count=res.get("element_count"),
                   failing_ids=ids, error=error)


def _scalar(v):
    """numpy scalars to Python ones, so the report and JSON read cleanly."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    if isinstance(v, float) and math.isfinite(v):
        return round(v, 6)
    return v


def _short(v, n: int = 6):
    if isinstance(v, (list, tuple, set)) and len(v) > n:
        vs = list(v)
        return f"[{', '.join(str(x) for x in vs[:n])}, ... ({len(vs)} values)]"
    return _scalar(v)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def run_gate(gate: str, tables: Sequence[Table], subjects: dict, report_path: str | Path | None = None,
             raise_on_failure: bool = True) -> CheckReport:
    """Validate ``tables``, write the report to ``report_path`` (when given) and enforce it.

    Args:
        gate: gate name used in the report and error (``index_and_splits``, ``candidates``...).
        tables: the tables and their expectations.
        subjects: what was checked, e.g. ``{"index": "data/index.json"}`` (shown in the report).
        report_path: text report (or JSON when it ends in ``.json``); written pass or fail.
        raise_on_failure: raise :class:`CheckFailed` when an expectation failed.
    Returns:
        The :class:`CheckReport` (when it passed, or ``raise_on_failure`` is False).
    """
    outcomes: list[Outcome] = []
    for t in tables:
        outcomes += validate_table(t)
    report = CheckReport(gate=gate, subjects={k: str(v) for k, v in subjects.items()}, outcomes=outcomes)
    if report_path is not None:
        report.write(report_path)
    if raise_on_failure and not report.success:
        first = report.failures[0]
        what = (f"{report.summary()}; first: [{first.table}] {first.description or first.expectation}"
                + (f" (failing ids: {', '.join(str(i) for i in first.failing_ids[:5])})" if first.failing_ids else ""))
        fix = (f"read the report{' ' + str(report_path) if report_path else ''} and regenerate the failing "
               "stage's output")
        raise CheckFailed(what, report.to_text(), path=next(iter(subjects.values()), None), fix=fix)
    return report
