"""Parameter groups, poly schedule, loss and the divergence guard."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semires.engine.optim import build_optimizer, build_scheduler, param_groups, poly_factor
from semires.errors import TrainingDiverged
from semires.train.losses import IGNORE_INDEX, category_loss, check_finite, dice_loss, segmentation_loss


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


def test_adamw_is_fused_where_torch_has_it_and_matches_the_loop():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))
    loop = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))
    loop.load_state_dict(net.state_dict())
    before = [p.detach().clone() for p in net.parameters()]
    fused = build_optimizer(net, 1e-2, 0.01)
    assert fused.defaults["fused"] is True
    ref = torch.optim.AdamW(param_groups(loop, 0.01), lr=1e-2, foreach=False)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        for model, opt in ((net, fused), (loop, ref)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    # the same update to float rounding; Adam divides by sqrt(v) + eps, which magnifies rounding where a
    # gradient is near zero, so single elements may differ by part of a step: compare on average
    moved = torch.cat([(a - s).abs().flatten() for a, s in zip(net.parameters(), before)]).mean()
    diff = torch.cat([(a - b).abs().flatten() for a, b in zip(net.parameters(), loop.parameters())]).mean()
    assert moved > 1e-2 and diff < 0.01 * moved


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


def _logits_for(mask: torch.Tensor, margin: float = 20.0) -> torch.Tensor:
    """(B, 2, H, W) logits that predict ``mask`` (B, H, W) with near certainty."""
    fg = mask.float() * 2 - 1
    return torch.stack([-fg, fg], dim=1) * margin / 2


def test_dice_loss_is_zero_for_a_perfect_mask_and_weighs_samples_equally():
    big = torch.zeros(1, 16, 16, dtype=torch.long)
    big[:, :12, :12] = 1
    small = torch.zeros(1, 16, 16, dtype=torch.long)
    small[:, 0, 0] = 1
    assert float(dice_loss(_logits_for(big), big)) == pytest.approx(0.0, abs=1e-6)
    # missing a 1-pixel object costs as much Dice as missing a 144-pixel one (CE would barely notice it)
    empty = torch.zeros_like(big)
    miss_small = float(dice_loss(_logits_for(empty), small, eps=1e-6))
    miss_big = float(dice_loss(_logits_for(empty), big, eps=1e-6))
    assert miss_small == pytest.approx(1.0, abs=1e-3) and miss_big == pytest.approx(1.0, abs=1e-3)
    ce_small = float(segmentation_loss(_logits_for(empty), small))
    ce_big = float(segmentation_loss(_logits_for(empty), big))
    assert ce_small < ce_big / 50
    both = torch.cat([big, small])
    pred = torch.cat([big, empty])
    assert float(dice_loss(_logits_for(pred), both, eps=1e-6)) == pytest.approx(0.5, abs=1e-3)


def test_dice_loss_ignores_unlabelled_pixels_and_has_gradients():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    wrong = torch.ones_like(target)
    ignored = target.clone()
    ignored[target == 0] = IGNORE_INDEX  # the false positives all fall on unlabelled pixels
    assert float(dice_loss(_logits_for(wrong), ignored)) == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    dice_loss(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_category_loss_downsamples_the_target_to_the_head_stride():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :4, :4] = 2  # one object of class 2 in the top-left quarter
    coarse = torch.zeros(1, 3, 2, 2)
    coarse[0, 0] = 20.0
    coarse[0, 0, 0, 0], coarse[0, 2, 0, 0] = 0.0, 20.0  # the stride-4 cell over the object says class 2
    assert float(category_loss(coarse, target)) == pytest.approx(0.0, abs=1e-6)
    wrong = coarse.flip(-1)
    expected = F.cross_entropy(wrong, torch.tensor([[[2, 0], [0, 0]]]))
    assert float(category_loss(wrong, target)) == pytest.approx(float(expected))
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    category_loss(logits, torch.randint(0, 3, (2, 16, 16))).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_raises_training_diverged(bad, tmp_path):
    check_finite(torch.tensor(1.0), 3)
    with pytest.raises(TrainingDiverged, match="diverged") as err:
        check_finite(torch.tensor(bad), 7, tmp_path / "last.pt")
    assert "step 7" in str(err.value) and "last.pt" in str(err.value) and "fix:" in str(err.value)


def _softmax_reference(logits, target, class_weights, dice_weight, pixel_weight=None, eps=1.0):
    """The losses written with torch's 2-class softmax (what the margin-based pass must equal)."""
    w = torch.tensor(class_weights)
    valid = target != IGNORE_INDEX
    ce = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE_INDEX, reduction="none")
    ce = (ce * (1.0 if pixel_weight is None else pixel_weight)).sum() / w[target.clamp(0, 1)][valid].sum()
    prob = logits.softmax(dim=1)[:, 1] * valid
    tgt = (target == 1).float()
    inter = (prob * tgt).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + tgt.flatten(1).sum(1)
    return ce + dice_weight * (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: confident logits, where a naive log(sigmoid) overflows
@pytest.mark.parametrize("with_pixel_weight", [False, True])
def test_loss_and_its_closed_form_gradient_match_the_softmax_formulation(scale, with_pixel_weight):
    from semires.train.losses import supervised_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 2, 9, 7) * scale
    target = (torch.rand(3, 9, 7) > 0.7).long()
    target[0, :2] = IGNORE_INDEX
    pw = torch.rand(3, 9, 7) if with_pixel_weight else None
    fused, ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    if pw is None:
        value = supervised_loss(fused, target, (0.9, 1.1), dice_weight=0.7)
    else:  # pixel weights are the unsupervised CE's (no Dice there)
        value = segmentation_loss(fused, target, (0.9, 1.1), pixel_weight=pw)
    expected = _softmax_reference(ref, target, (0.9, 1.1), 0.0 if pw is not None else 0.7, pw)
    value.backward()
    expected.backward()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5, abs=1e-6)
    assert torch.allclose(fused.grad, ref.grad, rtol=1e-4, atol=1e-8)
    assert fused.grad[:, 0].neg().equal(fused.grad[:, 1])  # only the margin between the classes matters
    low = logits.bfloat16().requires_grad_()
    supervised_loss(low, target, (0.9, 1.1), dice_weight=1.0).backward()
    assert low.grad.dtype == torch.bfloat16 and torch.isfinite(low.grad.float()).all()


def test_losses_take_only_two_class_logits():
    with pytest.raises(ValueError, match="2-class"):
        segmentation_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
