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


def _ablation(rows, budget="small"):
    cols = ["labeled", "variant", "seeds", "val mIoU", "val oIoU", "testA mIoU", "testA oIoU", "testB mIoU",
            "testB oIoU", "val mIoU vs supervised"]
    settings = {"burn_in": {"epochs": 6, "steps_per_epoch": 150, "image_size": 64}, "semi": {"steps": 600}}
    return {"columns": cols, "budget": budget, "budget_settings": settings, "machine": "cpu", "date": "d",
            "rows": [[ratio, variant, 1, val] + [None] * 6 for ratio, variant, val in rows]}


def test_headline_takes_the_best_refinement_variant_per_ratio():
    doc = _ablation([("1%", "supervised only", 10.0), ("1%", "mean teacher", 14.0), ("1%", "+IOM+PWA", 11.5),
                     ("1%", "+CPI+PWA", 12.25), ("5%", "supervised only", 27.0),
                     ("100%", "fully supervised (100%)", 46.0)])
    head = make_tables.headline([doc])
    assert head["rows"][0][:6] == ["1%", "small: 64 px, 900 + 600 steps", 10.0, "14.0", "12.2 (+CPI+PWA)", "+2.2"]
    assert head["rows"][0][6] == make_tables.PAPER_GAIN["1%"]
    # a ratio with supervised only says so; a row without "supervised only" (100 %) is not a budget row
    assert head["rows"][1][3:6] == ["not run", "not run", ""] and len(head["rows"]) == 2
    assert head["machine"] == "cpu" and "Sources" in head["notes"]


def test_every_results_file_is_rendered_and_current():
    """Each committed results file has its table in a document, and every document shows exactly
    what the JSON says (the README its headline, benchmarks/README.md every table)."""
    results = make_tables.load_results(ROOT / "benchmarks" / "results")
    assert set(make_tables.HEADLINE_SOURCES) <= set(results)
    docs = make_tables.documents(results, ROOT)
    assert set(docs) == {ROOT / "README.md", ROOT / "benchmarks" / "README.md"}
    for path, tables in docs.items():
        text = path.read_text()
        new, missing = make_tables.update(text, tables)
        assert missing == [], f"{path}: no table markers for {missing} (render them or delete the results file)"
        assert new == text, f"{path} is stale: run `make tables`"
