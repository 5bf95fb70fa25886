"""Parameter groups, poly schedule, loss and the divergence guard."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semires.errors import TrainingDiverged
from semires.train.losses import check_finite, segmentation_loss
from semires.train.optim import build_optimizer, build_scheduler, param_groups, poly_factor


def test_param_groups_skip_norms_biases_positions_and_frozen(tiny_text):
    from res_fixtures import tiny_model_cfg

    from semires.models import build_model

    model = build_model(tiny_model_cfg(tiny_text, name="lavt_swin", random_init=True, freeze_text=False))
    model.text.model.embeddings.word_embeddings.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert any("relative_position_bias_table" in n for n in nd)
    assert any("position_embeddings" in n for n in nd)
    assert any(n.endswith(".bias") for n in nd) and any("norm" in n.lower() for n in nd)
    assert all(p.ndim > 1 for n, p in model.named_parameters() if n in d)
    assert "text.model.embeddings.word_embeddings.weight" not in d | nd
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(d) + len(nd) == n_trainable


def test_poly_schedule():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5 ** 0.9)
    assert poly_factor(100, 100, 0.9) == 0.0
    assert poly_factor(0, 100, 0.9, warmup_steps=4) == 0.25
    lin = torch.nn.Linear(2, 2)
    opt = build_optimizer(lin, 1e-3, 0.01)
    sched = build_scheduler(opt, 10, 1.0)
    lrs = []
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == pytest.approx(9e-4) and lrs[-1] == pytest.approx(0.0)


def test_loss_matches_weighted_cross_entropy_and_pixel_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 6)
    target = torch.randint(0, 2, (2, 5, 6))
    w = torch.tensor([0.9, 1.1])
    ref = F.cross_entropy(logits, target, weight=w)
    assert segmentation_loss(logits, target) == pytest.approx(float(ref))
    ones = torch.ones(2, 5, 6)
    assert segmentation_loss(logits, target, pixel_weight=ones) == pytest.approx(float(ref), rel=1e-5)
    # zero weight on half the pixels halves their contribution
    half = ones.clone()
    half[:, :, :3] = 0
    partial = segmentation_loss(logits, target, pixel_weight=half)
    assert float(partial) < float(ref) + 1e-6
    # ignored pixels do not count
    ign = target.clone()
    ign[0] = 255
    assert segmentation_loss(logits, ign) == pytest.approx(float(F.cross_entropy(logits[1:], target[1:], weight=w)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_raises_training_diverged(bad, tmp_path):
    check_finite(torch.tensor(1.0), 3)
    with pytest.raises(TrainingDiverged, match="diverged") as err:
        check_finite(torch.tensor(bad), 7, tmp_path / "last.pt")
    assert "step 7" in str(err.value) and "last.pt" in str(err.value) and "fix:" in str(err.value)
