"""Evaluation: metrics at original resolution, results JSON, overlays, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from semires import io
from semires.data.index import RefIndex
from semires.engine.dataset import ExpressionDataset
from semires.engine.transforms import logits_to_masks
from semires.errors import DataError
from semires.eval.evaluate import eval_splits, evaluate_checkpoint, evaluate_model


class _Constant(torch.nn.Module):
    """Predicts 'object' everywhere: IoU of each expression is |truth| / (H * W)."""

    def forward(self, images, input_ids, attention_mask):
        b, _, h, w = images.shape
        logits = torch.zeros(b, 2, h, w)
        logits[:, 1] = 1.0
        return logits


def test_metrics_are_computed_at_original_resolution(mini_index, tiny_text):
    from semires.models import load_tokenizer

    index = RefIndex.load(mini_index)
    ds = ExpressionDataset.from_split(index, load_tokenizer(tiny_text), 24, 8, split="train")
    res = evaluate_model(_Constant(), ds, batch_size=5, progress=False, sample_indices=[0, 3])
    truth = [index.ann_mask(e.ann_id) for e in ds.expressions]
    expected = np.array([m.sum() / m.size for m in truth])
    np.testing.assert_allclose(res.ious, expected)
    assert res.metrics["n"] == len(ds) == 20
    assert res.metrics["mIoU"] == pytest.approx(100 * expected.mean())
    assert res.metrics["oIoU"] == pytest.approx(100 * sum(m.sum() for m in truth) / sum(m.size for m in truth))
    assert [s.ref_id for s in res.samples] == [ds.expressions[0].ref_id, ds.expressions[3].ref_id]
    assert res.samples[0].pred.shape == truth[0].shape == res.samples[0].image.shape[:2]


def test_evaluate_checkpoint_writes_results_and_overlays(trained_run, mini_index, tmp_path):
    out = tmp_path / "eval"
    res = evaluate_checkpoint(mini_index, trained_run / "best.safetensors", out, overlays=2, progress=False)
    assert set(res["splits"]) == {"val", "testA", "testB"}
    assert res["image_size"] == 32
    index = RefIndex.load(mini_index)
    for split, m in res["splits"].items():
        assert m["n"] == len(index.expressions(split))
        assert (out / f"overlays_{split}.png").stat().st_size > 0
    per = io.read_json(out / "per_expression.json")["splits"]
    assert res["splits"]["val"]["mIoU"] == pytest.approx(100 * np.mean([r[2] for r in per["val"]]), abs=1e-3)
    # the val score equals what training measured for the best epoch
    best = io.read_json(trained_run / "metrics.json")["best"]
    assert res["splits"]["val"]["mIoU"] == pytest.approx(best["mIoU"])
    assert io.read_json(out / "results.json") == res and io.is_complete(out)
    # a rerun on the same checkpoint returns the stored results
    (out / "overlays_val.png").unlink()
    assert evaluate_checkpoint(mini_index, trained_run / "best.safetensors", out, progress=False) == res
    assert not (out / "overlays_val.png").exists()


def test_masks_are_the_argmax_of_the_upsampled_logits():
    """Upsampling only the class difference gives the argmax of the upsampled logits; a tie is background."""
    torch.manual_seed(0)
    logits = torch.randn(6, 2, 16, 16) * 3
    for size in ((16, 16), (37, 53), (7, 9)):
        ref = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
        assert torch.equal(logits_to_masks(logits, size), ref.bool())
    assert torch.equal(logits_to_masks(logits), logits.argmax(1).bool())
    assert not logits_to_masks(torch.zeros(2, 2, 4, 4), (8, 8)).any()
    assert logits_to_masks(logits.bfloat16(), (20, 20)).dtype == torch.bool


def test_unknown_split_is_a_clear_error(mini_index):
    with pytest.raises(DataError, match="not in the index"):
        eval_splits(RefIndex.load(mini_index), ["testC"])


def test_cli_train_and_evaluate(tmp_path, tiny_text, mini_index):
    import typer
    import yaml

    from semires.cli import train as train_cli

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "model": {"text_encoder": str(tiny_text), "channels": [8, 8, 8, 8], "depths": [1, 1, 1, 1],
                  "decoder_channels": 8, "max_tokens": 8},
        "burn_in": {"epochs": 1, "batch_size": 4, "image_size": 32, "device": "cpu", "threads": 1},
        "mlflow": {"enabled": False}}))
    app = typer.Typer()
    app.add_typer(train_cli.app, name="train")
    app.command("evaluate")(train_cli.evaluate)
    runner = CliRunner()
    r = runner.invoke(app, ["train", "supervised", "--index", str(mini_index), "--labeled", "all",
                            "--out", str(tmp_path / "run"), "--params", str(params), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "best epoch 1" in r.output and (tmp_path / "run" / "best.safetensors").is_file()
    r = runner.invoke(app, ["evaluate", "--index", str(mini_index), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                            "--out", str(tmp_path / "eval"), "--splits", "val,testB", "--params", str(params),
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "val: n=4" in r.output.replace("   ", "") and "testB" in r.output
    assert set(io.read_json(tmp_path / "eval" / "results.json")["splits"]) == {"val", "testB"}
