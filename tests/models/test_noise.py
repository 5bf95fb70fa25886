"""Student-only noise: stochastic depth and word dropout act in train mode only."""

from __future__ import annotations

import pytest
import torch

from semires.models.backbones import drop_path


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 3, 2, 2)
    y = drop_path(x, 0.3, training=True)
    per_sample = y.flatten(1)
    kept = per_sample[:, 0] > 0
    assert torch.allclose(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.7))
    assert torch.all(per_sample[~kept] == 0)
    assert abs(kept.float().mean().item() - 0.7) < 0.03
    assert torch.equal(drop_path(x, 0.3, training=False), x) and torch.equal(drop_path(x, 0.0, training=True), x)


def test_set_noise_changes_training_outputs_only(tiny_text):
    from res_fixtures import tiny_model_cfg

    from semires.models import build_model

    model = build_model(tiny_model_cfg(tiny_text))
    img = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[101, 2417, 102, 0, 0, 0, 0, 0]] * 2)
    att = (ids > 0).long()
    model.eval()
    clean = model(img, ids, att)
    model.set_noise(drop_path=0.5, word_dropout=0.5)
    assert torch.equal(model(img, ids, att), clean)  # eval mode: no noise (the teacher)
    model.train()
    torch.manual_seed(1)
    a = model(img, ids, att)
    torch.manual_seed(2)
    b = model(img, ids, att)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError):
        model.set_noise(drop_path=1.0)
