"""Offline pseudo_label and refine stages, their storage, the quality report and self-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OFF

from semires import io
from semires.errors import DataError, SemiresError
from semires.pseudo.config import PseudoLabelConfig, RefineStageConfig
from semires.pseudo.label import run_pseudo_label
from semires.pseudo.refine_stage import load_refined, quality_report, refined_target, run_refine
from semires.pseudo.shards import PseudoStore, dequantize, quantize, read_shard, write_shard
from semires.refine import RefineConfig, pwa_weight
from semires.train.semi import train_semi
from semires.train.semi_config import SemiConfig


def test_shards_round_trip_and_quantisation_error_is_bounded(tmp_path):
    rng = np.random.default_rng(0)
    prob = rng.random((3, 10, 10)).astype(np.float32)
    mask = prob > 0.5
    path = write_shard(tmp_path / "shard-00000.npz", [1, 2, 3], [10, 20, 30], [7, 7, 8], torch.from_numpy(prob),
                       torch.from_numpy(mask))
    sh = read_shard(path)
    assert sh.keys() == [(1, 10), (2, 20), (3, 30)] and sh.image_id.tolist() == [7, 7, 8]
    assert sh.prob.dtype == np.uint8 and np.abs(dequantize(sh.prob).numpy() - prob).max() <= 1 / 510 + 1e-7
    assert np.array_equal(sh.masks(), mask)
    assert np.array_equal(quantize(np.array([0.0, 1.0, 0.5])), np.array([0, 255, 128], np.uint8))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        read_shard(tmp_path / "bad.npz")


@pytest.fixture(scope="module")
def pseudo_dir(semi_setup):
    out = semi_setup["root"] / "pseudo"
    run_pseudo_label(semi_setup["index"], semi_setup["split"].unlabeled, semi_setup["burn_in"], out,
                     PseudoLabelConfig(batch_size=4, shard_size=5, device="cpu"), OFF, progress=False)
    return out


def test_pseudo_label_stage_stores_every_unlabeled_expression(semi_setup, pseudo_dir):
    store = PseudoStore(pseudo_dir)
    want = semi_setup["index"].expressions("train", semi_setup["split"].unlabeled)
    assert sorted(store.keys()) == sorted((e.ref_id, e.sent_id) for e in want)
    assert store.image_size == 32 and len(store.shard_files) == -(-len(want) // 5)
    prob, mask = store.get(store.keys()[0])
    assert prob.shape == (32, 32) and prob.dtype == np.uint8 and mask.dtype == bool
    # argmax mask agrees with p > 0.5 up to one quantisation step
    assert np.all(mask[prob >= 129]) and not np.any(mask[prob <= 126])


def test_pseudo_label_resume_keeps_whole_shards_and_refuses_another_teacher(semi_setup, pseudo_dir, tmp_path):
    import shutil

    copy = tmp_path / "pseudo"
    shutil.copytree(pseudo_dir, copy)
    (copy / "_SUCCESS").unlink()
    (copy / "shard-00001.npz").write_bytes(b"truncated")
    manifest = run_pseudo_label(semi_setup["index"], semi_setup["split"].unlabeled, semi_setup["burn_in"], copy,
                                PseudoLabelConfig(batch_size=4, shard_size=5, device="cpu"), OFF, progress=False)
    assert manifest["shards_reused"] == len(manifest["shards"]) - 1
    assert read_shard(copy / "shard-00001.npz").keys() == read_shard(pseudo_dir / "shard-00001.npz").keys()
    other = tmp_path / "other.safetensors"
    other.write_bytes(semi_setup["burn_in"].read_bytes() + b" ")
    with pytest.raises(SemiresError, match="different teacher"):
        run_pseudo_label(semi_setup["index"], semi_setup["split"].unlabeled, other, copy, tracking=OFF,
                         progress=False)


@pytest.fixture(scope="module")
def noisy_pseudo_dir(semi_setup, tmp_path_factory):
    """A pseudo-label folder written by hand: every unlabeled ref's true mask shifted by 1 px, and
    every third one replaced by a wrong blob (so both matched and unmatched samples occur)."""
    from semires.engine.transforms import resize_mask
    from semires.pseudo.shards import FORMAT

    out = tmp_path_factory.mktemp("noisy_pseudo")
    index, size = semi_setup["index"], 32
    exprs = index.expressions("train", semi_setup["split"].unlabeled)
    masks, probs = [], []
    for k, e in enumerate(exprs):
        m = np.roll(resize_mask(index.ref_mask(e.ref_id), size), 1, axis=1)
        if k % 3 == 2:
            m = np.zeros_like(m)
            m[2:9, 20:30] = True
        masks.append(m)
        probs.append(np.where(m, 0.8, 0.1).astype(np.float32))
    write_shard(out / "shard-00000.npz", [e.ref_id for e in exprs], [e.sent_id for e in exprs],
                [e.image_id for e in exprs], np.stack(probs), np.stack(masks))
    io.write_json(out / "manifest.json", {"format": FORMAT, "image_size": size,
                                          "shards": [{"file": "shard-00000.npz", "count": len(exprs)}]})
    io.mark_complete(out)
    return out


def test_quality_report_separates_pseudo_labels_on_and_off_the_referred_object():
    """IoU before refinement >= on_target_iou: the teacher found the object (refinement can sharpen it);
    below: another object or none. Counts are [intersection, union] with the true mask."""
    items = [{"matched": True, "parts": 1, "before": [60, 100], "after": [90, 100]},   # on target, sharpened
             {"matched": False, "parts": 0, "before": [50, 100], "after": [50, 100]},  # on target (IoU 0.5)
             {"matched": True, "parts": 1, "before": [10, 100], "after": [0, 100]},    # off target
             {"matched": False, "parts": 0, "before": [0, 80], "after": [0, 80]}]      # off target, empty overlap
    rep = quality_report(items, RefineConfig(strategy="iom"), 32)
    on, off = rep["groups"]["on_target"], rep["groups"]["off_target"]
    assert (on["n"], off["n"]) == (2, 2) and rep["on_target_iou"] == 0.5
    assert on["before"]["mIoU"] == pytest.approx(55.0) and on["after"]["mIoU"] == pytest.approx(70.0)
    assert off["before"]["mIoU"] == pytest.approx(5.0) and off["after"]["mIoU"] == pytest.approx(0.0)
    assert rep["groups"]["matched"]["n"] == 2 and rep["delta_mIoU"] == pytest.approx(5.0)
    assert quality_report(items, RefineConfig(strategy="iom"), 32, on_target_iou=0.55)["groups"]["on_target"]["n"] == 1


def test_refine_stage_reports_quality_and_stores_targets(semi_setup, noisy_pseudo_dir, tmp_path):
    cfg = RefineConfig(strategy="iom", pwa=True)
    report = run_refine(semi_setup["index"], noisy_pseudo_dir, semi_setup["candidates"], tmp_path / "ref", cfg,
                        RefineStageConfig(batch_size=4, overlays=4), OFF, progress=False)
    store = PseudoStore(noisy_pseudo_dir)
    assert report["n"] == len(store) and report["variant"] == "iom+pwa"
    groups = report["groups"]
    assert groups["matched"]["n"] > 0 and groups["unmatched"]["n"] > 0
    assert groups["matched"]["n"] + groups["unmatched"]["n"] == report["n"]
    assert report["match_rate"] == pytest.approx(100 * groups["matched"]["n"] / report["n"])
    # the candidates hold every true object: a matched sample gets its object exactly (or a wrong one)
    assert report["delta_mIoU"] > 10 and report["improved"] > report["worsened"]
    assert groups["unmatched"]["after"] == groups["unmatched"]["before"]  # unmatched keep their pseudo-mask
    assert (tmp_path / "ref" / "overlays.png").is_file() and io.is_complete(tmp_path / "ref")
    items, used, _ = load_refined(tmp_path / "ref")
    assert used == cfg and len(items) == len(store)
    key = next(k for k, it in items.items() if not it["matched"])
    prob_q, pseudo = store.get(key)
    t = refined_target(items[key], prob_q, cfg)
    assert np.array_equal(t.label, pseudo) and not t.matched
    assert np.allclose(t.weight, pwa_weight(dequantize(prob_q)).numpy())
    key = next(k for k, it in items.items() if it["matched"])
    t = refined_target(items[key], store.get(key)[0], cfg)
    assert t.matched and np.array_equal(t.weight, np.ones_like(t.weight))
    # same settings: returned as is; other settings in the same folder: refused
    assert run_refine(semi_setup["index"], noisy_pseudo_dir, semi_setup["candidates"], tmp_path / "ref", cfg,
                      tracking=OFF, progress=False) == report
    with pytest.raises(SemiresError, match="other settings"):
        run_refine(semi_setup["index"], noisy_pseudo_dir, semi_setup["candidates"], tmp_path / "ref",
                   RefineConfig(strategy="cpi"), tracking=OFF, progress=False)


def test_refine_stage_runs_on_real_teacher_output(semi_setup, pseudo_dir, tmp_path):
    report = run_refine(semi_setup["index"], pseudo_dir, semi_setup["candidates"], tmp_path / "ref",
                        RefineConfig(strategy="cpi"), RefineStageConfig(overlays=2), OFF, progress=False)
    assert report["n"] == len(PseudoStore(pseudo_dir)) and report["before"]["n"] == report["n"]


def test_self_training_learns_the_stored_labels(semi_setup, noisy_pseudo_dir, tmp_path):
    run_refine(semi_setup["index"], noisy_pseudo_dir, semi_setup["candidates"], tmp_path / "ref",
               RefineConfig(strategy="cpi", pwa=True), RefineStageConfig(overlays=0), OFF, progress=False)
    s = semi_setup
    result = train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "student",
                        SemiConfig(mode="self_training", steps=2, batch_size=2, eval_every=2, device="cpu", threads=1,
                                   overlays=0), RefineConfig(strategy="cpi"), None, refined_dir=tmp_path / "ref",
                        tracking=OFF, progress=False)
    assert result["mode"] == "self_training" and result["steps"] == 2


def test_cli_runs_the_offline_stages(semi_setup, noisy_pseudo_dir, tmp_path):
    from typer.testing import CliRunner

    from semires.cli.semi import app

    params = tmp_path / "params.yaml"
    params.write_text("mlflow: {enabled: false}\nrefine_stage: {overlays: 0}\n")
    r = CliRunner().invoke(app, ["refine", "--index", str(semi_setup["index"].path), "--pseudo", str(noisy_pseudo_dir),
                                 "--out", str(tmp_path / "ref"), "--strategy", "none", "--no-pwa", "--params",
                                 str(params), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "mt: " in r.output and "match rate 0.0%" in r.output
    from semires.errors import SemiresError

    r = CliRunner().invoke(app, ["refine", "--index", str(semi_setup["index"].path), "--pseudo", str(noisy_pseudo_dir),
                                 "--out", str(tmp_path / "ref2"), "--strategy", "best", "--params", str(params)])
    assert isinstance(r.exception, SemiresError) and "--strategy" in str(r.exception)
