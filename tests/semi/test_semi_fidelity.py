"""The semi stage's published defaults: loss balance per strategy, EMA momentum from the run length,
the burn-in's learning rate, the gradient share of the unlabeled term."""

from __future__ import annotations

import math

import pytest
import torch

from semires.errors import SemiresError
from semires.train.semi import burn_in_lr, gradient_share
from semires.train.semi_config import SUP_WEIGHT, SemiConfig


def test_supervised_weight_follows_the_published_script_of_each_strategy():
    cfg = SemiConfig()
    assert cfg.sup_weight_for("iom") == 10.0 and cfg.sup_weight_for("cpi") == 1.0
    assert cfg.sup_weight_for("none") == SUP_WEIGHT["iom"]
    assert SemiConfig(sup_weight=3.0).sup_weight_for("cpi") == 3.0
    with pytest.raises(ValueError, match="sup_weight"):
        cfg.sup_weight_for("new_strategy")


def test_ema_momentum_follows_the_run_length():
    cfg = SemiConfig(ema_window=0.1)
    assert cfg.momentum_for(25_000) == pytest.approx(0.9996)
    assert cfg.momentum_for(3000) == pytest.approx(1 - 1 / 300)
    # whatever the length, the burn-in's share of the final teacher is about exp(-10)
    for n in (500, 3000, 40_000):
        assert cfg.momentum_for(n) ** n == pytest.approx(math.exp(-10), rel=0.2)
    assert SemiConfig(ema_momentum=0.99).momentum_for(10) == 0.99


def test_defaults_are_the_published_views_and_loss():
    cfg = SemiConfig()
    assert cfg.jitter_p == 1.0 and cfg.jitter_hue == 0.0 and cfg.jitter_brightness == 0.25
    assert cfg.blur_sigma == pytest.approx((0.1 / 480, 2.0 / 480))
    assert cfg.dice_weight == 0.0 and cfg.unsup_dice_weight == 0.0 and cfg.lr is None


def test_burn_in_lr_comes_from_the_model_file_or_its_folder(tmp_path):
    from semires import io

    assert burn_in_lr(tmp_path / "best.safetensors", {"lr": 0.003}) == 0.003
    io.write_json(tmp_path / "config.json", {"burn_in": {"lr": 0.002}})
    assert burn_in_lr(tmp_path / "best.safetensors", {}) == 0.002
    with pytest.raises(SemiresError, match="semi.lr"):
        burn_in_lr(tmp_path / "other" / "best.safetensors", {})


def test_gradient_share_measures_each_terms_pull():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)
    out = model(x).sum()
    share = gradient_share(model, 3.0 * out, 1.0 * out)
    assert share["grad_share_unsup"] == pytest.approx(0.25) and share["grad_cosine"] == pytest.approx(1.0)
    assert share["grad_norm_sup"] == pytest.approx(3 * share["grad_norm_unsup"])


def test_semi_training_uses_the_burn_in_lr_and_records_the_effective_settings(semi_setup, tmp_path):
    from semires import io
    from semires.refine import RefineConfig
    from semires.tracking import TrackingConfig
    from semires.train.semi import train_semi

    s = semi_setup
    cfg = SemiConfig(steps=4, batch_size=2, eval_every=4, log_every=2, image_size=32, device="cpu", threads=1,
                     eval_batch_size=8, overlays=2)
    res = train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "run", cfg,
                     RefineConfig(strategy="iom"), s["candidates"], tracking=TrackingConfig(enabled=False),
                     progress=False)
    eff = io.read_json(tmp_path / "run" / "config.json")["effective"]
    assert eff["lr"] == pytest.approx(1e-3) and eff["sup_weight"] == 10.0  # tiny_burn_in's lr, IOM's weight
    assert eff["ema_momentum"] == 0.0  # 4 steps x ema_window 0.1 < 1 step: the teacher follows the student
    logged = [r for r in res["train_log"] if "grad_share_unsup" in r]
    assert logged and all(0.0 <= r["grad_share_unsup"] <= 1.0 for r in logged)
