"""benchmarks/gpu_sweep.py and the benchmarks' ``--model KEY=VALUE`` overrides: variants run as their own
processes with the named model change, and their curves are gathered into one table (CPU dry run)."""

from __future__ import annotations

import json

import pytest
from res_fixtures import load_benchmark as _load


def test_model_overrides_parse_json_values_and_refuse_unknown_fields():
    from semires.config import parse_overrides
    from semires.errors import SemiresError
    from semires.models import ModelConfig

    assert parse_overrides(ModelConfig, ["channels=[24,48,96,192]", "fusion_heads=8", "text_layers=[0,-1]"]) == {
        "channels": [24, 48, 96, 192], "fusion_heads": 8, "text_layers": [0, -1]}
    assert parse_overrides(ModelConfig, ["name=lavt_tiny"]) == {"name": "lavt_tiny"}  # not JSON: kept as a string
    for bad in (["chanels=[1]"], ["fusion_heads"]):
        with pytest.raises(SemiresError, match="KEY=VALUE with KEY a field of ModelConfig"):
            parse_overrides(ModelConfig, bad)


def test_unknown_variant_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        _load("gpu_sweep").main(["--variants", "default,huge", "--device", "cpu"])
    assert exc.value.code == 2 and "huge" in capsys.readouterr().err


def _variant_doc(size: int, curve: list[float], evals: float) -> dict:
    history = [{"epoch": i + 1, "mIoU": m} for i, m in enumerate(curve)]
    ev = {s: {"mIoU": evals, "oIoU": evals - 3} for s in ("val", "testA", "testB")}
    return {"machine": "test GPU", "raw": [{"image_size": size, "history": history, "eval": ev, "train_s": 90.0}]}


def test_write_gathers_finished_variants_and_keeps_earlier_batches(tmp_path):
    sweep = _load("gpu_sweep")
    (tmp_path / "sweep_wide.json").write_text(json.dumps(_variant_doc(96, [30.04, 41.26], 42.0)))
    (tmp_path / "sweep_default.json").write_text(json.dumps(_variant_doc(96, [35.0, 44.94], 45.56)))
    args = type("A", (), {"out": tmp_path / "gpu_model_sweep.json", "val_max": 1000, "epochs": 2,
                          "preset": "default"})()
    # 'no_detail' never finished (no JSON): it is left out, not reported as zeros
    sweep.write(args, ["wide", "no_detail", "default"], 120.0)
    doc = json.loads(args.out.read_text())
    assert [r[0] for r in doc["rows"]] == ["default", "wide"]   # the variants' table order
    assert doc["rows"][0][3] == "35.0, 44.9" and doc["rows"][0][4] == 45.6 and doc["rows"][0][7:] == [3, 1.5]
    assert doc["machine"] == "test GPU"
    # a second batch adds its variants and replaces a rerun one; the first batch's stay
    (tmp_path / "sweep_wide.json").unlink()
    (tmp_path / "sweep_default.json").write_text(json.dumps(_variant_doc(96, [36.0, 47.0], 47.0)))
    (tmp_path / "sweep_decoder16.json").write_text(json.dumps(_variant_doc(96, [33.0, 40.0], 40.0)))
    sweep.write(args, ["default", "decoder16"], 60.0)
    doc = json.loads(args.out.read_text())
    assert [(r[0], r[4], r[7]) for r in doc["rows"]] == [("default", 47.0, 2), ("wide", 42.0, 3),
                                                         ("decoder16", 40.0, 2)]


@pytest.mark.slow
def test_sweep_runs_each_variant_with_its_change(tmp_path):
    """One epoch on RefShapes 'tiny' on the CPU: the 'no_detail' process trains a stride-4 model."""
    out = tmp_path / "res" / "gpu_model_sweep.json"
    rc = _load("gpu_sweep").main(["--variants", "no_detail", "--epochs", "1", "--device", "cpu", "--preset", "tiny",
                                  "--workers", "0", "--val-max", "20", "--work", str(tmp_path / "work"),
                                  "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r[0] for r in doc["rows"]] == ["no_detail"]
    assert doc["raw"]["no_detail"]["model_overrides"] == {"detail_stride": 4}
    run = next((tmp_path / "work" / "runs").glob("96px_e1_*_s0_detail_stride4"))
    assert json.loads((run / "config.json").read_text())["model"]["detail_stride"] == 4
    assert "detail_stride=4" in json.loads((out.parent / "sweep_no_detail.json").read_text())["notes"]
