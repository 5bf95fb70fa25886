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


def test_headline_shows_every_arm_with_the_papers_gain_beside_the_semires_rows():
    cols = ["variant", "seeds", "val mIoU", "testA mIoU", "testB mIoU", "val vs burn-in",
            "val vs step-matched supervised"]
    doc = {"columns": cols, "machine": "cpu", "date": "d",
           "rows": [["supervised only (burn-in)", "0,1,2", "33.0 ± 1.0", "31.0", "32.0", None, None],
                    ["+IOM+PWA", "0,1,2", "41.0 ± 0.5", "40.0", "40.0", "+8.0 ± 0.5", "+1.0 ± 0.5"],
                    ["ref consensus + soft IoU matching (beyond the paper)", "0", "40.7", "41.3", "40.8", "+7.3",
                     "+0.9"]]}
    head = make_tables.headline(doc)
    assert head["rows"][0] == ["supervised only (burn-in)", "0,1,2", "33.0 ± 1.0", None, None, None]
    assert head["rows"][1] == ["+IOM+PWA", "0,1,2", "41.0 ± 0.5", "+8.0 ± 0.5", "+1.0 ± 0.5",
                               make_tables.PAPER_GAIN_1PCT]
    assert head["rows"][2][5] is None  # not a SemiRES variant of the paper
    assert head["machine"] == "cpu" and make_tables.HEADLINE_SOURCE in head["notes"]
    screened = make_tables.headline({**doc, "headline_variants": ["supervised only (burn-in)", "+IOM+PWA"]})
    assert [r[0] for r in screened["rows"]] == ["supervised only (burn-in)", "+IOM+PWA"]  # screens stay in benchmarks/


def test_every_results_file_is_rendered_and_current():
    """Each committed results file has its table in a document, and every document shows exactly
    what the JSON says (the README its headline, benchmarks/README.md every table)."""
    results = make_tables.load_results(ROOT / "benchmarks" / "results")
    assert make_tables.HEADLINE_SOURCE in results
    docs = make_tables.documents(results, ROOT)
    assert set(docs) == {ROOT / "README.md", ROOT / "benchmarks" / "README.md"}
    for path, tables in docs.items():
        text = path.read_text()
        new, missing = make_tables.update(text, tables)
        assert missing == [], f"{path}: no table markers for {missing} (render them or delete the results file)"
        assert new == text, f"{path} is stale: run `make tables`"


def test_fault_summary_counts_cases_per_class():
    doc = {"commit": "abc", "before_commit": "def",
           "rows": [{"class": "bad params", "passed": True, "failed_before": True},
                    {"class": "bad params", "passed": True, "failed_before": False},
                    {"class": "interrupt", "passed": False, "failed_before": True}]}
    table = make_tables.fault_summary(doc)
    assert table["rows"] == [["bad params", 2, 2, 1], ["interrupt", 1, 0, 1], ["all", 3, 2, 2]]
    assert "def" in table["notes"]
