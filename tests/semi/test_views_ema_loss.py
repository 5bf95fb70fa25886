"""Views, the EMA teacher update and the unsupervised loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from semires.engine.transforms import normalize
from semires.train.ema import MeanTeacher
from semires.train.losses import segmentation_loss
from semires.train.semi import unsup_loss
from semires.train.views import color_jitter, gaussian_blur, normalize_batch, step_generator, strong_view, weak_view


def _images(b=4, s=16, seed=0):
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


def test_views_are_reproducible_from_the_step_and_keep_shape_and_range():
    x = _images()
    a = strong_view(weak_view(x, step_generator(0, 5)), step_generator(0, 5))
    g = step_generator(0, 5)
    b = strong_view(weak_view(x, g), g)
    g2 = step_generator(0, 5)
    c = strong_view(weak_view(x, g2), g2)
    assert torch.equal(b, c)
    assert a.shape == x.shape and float(b.min()) >= 0 and float(b.max()) <= 1
    g3 = step_generator(0, 6)
    assert not torch.equal(strong_view(weak_view(x, g3), g3), b)


def test_probability_zero_means_identity_and_one_means_always():
    x = _images()
    g = step_generator(1, 0)
    assert torch.equal(weak_view(x, g, blur_p=0.0), x)
    assert torch.equal(color_jitter(x, g, p=0.0), x)
    blurred = weak_view(x, step_generator(1, 0), blur_p=1.0, blur_sigma=(1.5, 1.5))
    assert torch.allclose(blurred, gaussian_blur(x, torch.full((4,), 1.5)))
    # blur smooths: neighbouring pixels get closer
    assert (blurred.diff(dim=-1).abs().mean() < x.diff(dim=-1).abs().mean() / 2)


def test_blur_keeps_a_constant_image_and_jitter_changes_colours_but_not_geometry():
    flat = torch.full((2, 3, 12, 12), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 2.0])), flat, atol=1e-6)
    x = torch.zeros(1, 3, 12, 12)
    x[..., 4:8, 4:8] = 0.8
    y = color_jitter(x, step_generator(3, 1), p=1.0, brightness=0.5, contrast=0.0, saturation=0.0)
    assert torch.equal(y[..., :4, :] == y[..., 0:1, 0:1], torch.ones_like(y[..., :4, :], dtype=torch.bool))
    assert not torch.allclose(y, x)


def test_normalize_batch_matches_the_dataset_normalisation():
    import numpy as np

    img = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    raw = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    assert torch.allclose(normalize_batch(raw)[0], normalize(img), atol=1e-6)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)
        self.conv = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)


def test_ema_update_follows_the_formula_skips_frozen_and_copies_counters():
    torch.manual_seed(0)
    student = Tiny()
    pair = MeanTeacher(student)
    t0 = {k: v.clone() for k, v in pair.teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.conv.parameters():
            p.add_(1.0)
        student.bn.running_mean.add_(2.0)
        student.bn.num_batches_tracked.add_(7)
        student.frozen.weight.add_(5.0)  # frozen: never averaged
    pair.update_teacher(0.9)
    t = pair.teacher.state_dict()
    s = student.state_dict()
    for k in ("conv.weight", "conv.bias", "bn.running_mean"):
        assert torch.allclose(t[k], 0.9 * t0[k] + 0.1 * s[k], atol=1e-6), k
    assert torch.equal(t["frozen.weight"], t0["frozen.weight"])
    assert int(t["bn.num_batches_tracked"]) == 7
    assert not any(p.requires_grad for p in pair.teacher.parameters())
    pair.train()
    assert student.training and not pair.teacher.training
    pair.update_teacher(1.0)
    assert torch.allclose(pair.teacher.state_dict()["conv.weight"], t["conv.weight"])
    with pytest.raises(ValueError):
        pair.update_teacher(1.5)


def test_mean_teacher_state_holds_both_models():
    pair = MeanTeacher(Tiny())
    keys = pair.trainable_state_dict()
    assert any(k.startswith("student.") for k in keys) and any(k.startswith("teacher.") for k in keys)


def test_unsup_loss_averages_matched_and_pwa_weighted_unmatched_terms():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, 6, 6, generator=g)
    label = torch.rand(4, 6, 6, generator=g) > 0.5
    weight = torch.rand(4, 6, 6, generator=g)
    cw = (0.9, 1.1)
    matched = torch.tensor([True, False, True, False])
    m_term = segmentation_loss(logits[matched], label[matched].long(), cw)
    u_term = segmentation_loss(logits[~matched], label[~matched].long(), cw, pixel_weight=weight[~matched])
    got = unsup_loss(logits, label, weight, matched, cw)
    assert math.isclose(float(got), float((m_term + u_term) / 2), rel_tol=1e-6)
    all_matched = unsup_loss(logits, label, weight, torch.ones(4, dtype=torch.bool), cw)
    assert math.isclose(float(all_matched), float(segmentation_loss(logits, label.long(), cw)), rel_tol=1e-6)
    none_matched = unsup_loss(logits, label, None, torch.zeros(4, dtype=torch.bool), cw)
    assert math.isclose(float(none_matched), float(segmentation_loss(logits, label.long(), cw)), rel_tol=1e-6)
    # PWA down-weights unsure pixels: weights below 1 lower the loss
    assert float(unsup_loss(logits, label, torch.full_like(weight, 0.5), torch.zeros(4, dtype=torch.bool), cw)) < \
        float(none_matched)
