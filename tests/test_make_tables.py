from res_fixtures import BENCHMARKS, load_benchmark

ROOT = BENCHMARKS.parent
make_tables = load_benchmark("make_tables")


def test_table_replaces_only_its_block():
    readme = "intro\n<!-- table:x -->\nold\n<!-- /table:x -->\nend\n"
    res = {"x": {"columns": ["a", "b"], "rows": [[1, 12.345], ["s", 0.5]], "machine": "m", "date": "d", "notes": "n"}}
    new, missing = make_tables.update(readme, res)
    assert missing == []
    assert new.startswith("intro\n<!-- table:x -->\n| a | b |\n|---|---|\n| 1 | 12.3 |\n| s | 0.5 |")
    assert new.endswith("_Measured on m, d. n_\n<!-- /table:x -->\nend\n")
    assert make_tables.update(new, res)[0] == new  # idempotent


def test_missing_marker_is_reported():
    assert make_tables.update("no markers", {"y": {"columns": [], "rows": []}})[1] == ["y"]


def test_readme_tables_are_current():
    """The README shows exactly what the committed benchmark JSON says."""
    results = {p.stem: __import__("json").loads(p.read_text())
               for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    text = (ROOT / "README.md").read_text()
    assert make_tables.update(text, results)[0] == text
