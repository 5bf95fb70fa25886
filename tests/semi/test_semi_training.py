"""The semi-supervised trainer end to end on RefShapes 'tiny': online, resume, divergence, self-training."""

from __future__ import annotations

import pytest
import torch
from conftest import OFF

from semires import io
from semires.engine.checkpoint import load_checkpoint, read_model_file
from semires.errors import SemiresError, TrainingDiverged
from semires.refine import RefineConfig
from semires.train import semi as semi_mod
from semires.train.semi import train_semi
from semires.train.semi_config import SemiConfig


def cfg(**kw) -> SemiConfig:
    base = {"steps": 4, "batch_size": 2, "eval_every": 2, "checkpoint_every": 1, "log_every": 1, "device": "cpu",
            "threads": 1, "overlays": 2, "ema_momentum": 0.9, "eval_batch_size": 8}
    base.update(kw)
    return SemiConfig(**base)


def run(s, out, c=None, refine_cfg=None, **kw):
    return train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], out, c or cfg(),
                      refine_cfg or RefineConfig(strategy="iom"), s["candidates"], tracking=OFF, progress=False, **kw)


def test_online_training_keeps_the_best_teacher_and_moves_it_by_ema(semi_setup, tmp_path):
    result = run(semi_setup, tmp_path / "semi")
    out = tmp_path / "semi"
    assert io.is_complete(out)
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert result["best"]["oIoU"] == max(h["oIoU"] for h in result["history"])
    weights, _, info = read_model_file(out / "best.safetensors")
    assert info["role"] == "ema_teacher" and info["step"] == result["best_step"]
    burn, _, _ = read_model_file(semi_setup["burn_in"])
    assert any(not torch.equal(weights[k], burn[k]) for k in burn)  # the teacher moved away from burn-in
    doc = load_checkpoint(out / "last.pt")
    assert doc["step"] == 4 and doc["config"]["refine"]["strategy"] == "iom"
    assert (out / "overlays_val.png").is_file()
    # a finished stage is not redone
    assert run(semi_setup, out) == result


@pytest.mark.parametrize("refine_cfg", [RefineConfig(strategy="none", pwa=True), RefineConfig(strategy="cpi", pwa=False)])
def test_every_strategy_trains(semi_setup, tmp_path, refine_cfg):
    result = run(semi_setup, tmp_path / "semi", cfg(steps=2, eval_every=2), refine_cfg)
    assert result["steps"] == 2


def test_a_killed_run_resumes_to_the_same_teacher(semi_setup, tmp_path):
    full = run(semi_setup, tmp_path / "full")

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(semi_setup, tmp_path / "resumed", step_hook=kill)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 3
    resumed = run(semi_setup, tmp_path / "resumed")
    assert resumed["history"] == full["history"]
    a, _, _ = read_model_file(tmp_path / "full" / "best.safetensors")
    b, _, _ = read_model_file(tmp_path / "resumed" / "best.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_config_is_refused(semi_setup, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(semi_setup, tmp_path / "semi", step_hook=lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SemiresError, match="different config.*semi.sup_weight"):
        run(semi_setup, tmp_path / "semi", cfg(sup_weight=5.0))


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(semi_setup, tmp_path, monkeypatch):
    real = semi_mod.unsup_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(semi_mod, "unsup_loss", poisoned)
    out = tmp_path / "semi"
    with pytest.raises(TrainingDiverged) as err:
        run(semi_setup, out, cfg(checkpoint_every=1, steps=6, eval_every=6))
    assert "loss is nan at step 3" in str(err.value) and "last.pt" in str(err.value)
    doc = load_checkpoint(out / "last.pt")
    assert doc["step"] == 2  # the state before the bad step, still loadable
    assert not io.is_complete(out)
    monkeypatch.setattr(semi_mod, "unsup_loss", real)
    assert run(semi_setup, out, cfg(checkpoint_every=1, steps=6, eval_every=6))["steps"] == 6  # resumes


def test_missing_inputs_give_clear_errors(semi_setup, tmp_path):
    s = semi_setup
    with pytest.raises(SemiresError, match="needs SAM candidates"):
        train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "a", cfg(),
                   RefineConfig(strategy="cpi"), None, tracking=OFF, progress=False)
    with pytest.raises(SemiresError, match="self_training needs"):
        train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "b",
                   cfg(mode="self_training"), RefineConfig(), None, tracking=OFF, progress=False)


def test_a_finished_run_is_not_returned_for_another_config(semi_setup, tmp_path):
    run(semi_setup, tmp_path / "semi", cfg(steps=2, eval_every=2))
    assert run(semi_setup, tmp_path / "semi", cfg(steps=2, eval_every=2, log_every=5))["steps"] == 2  # free key
    with pytest.raises(SemiresError, match="finished run with another config.*semi.steps"):
        run(semi_setup, tmp_path / "semi", cfg(steps=3, eval_every=2))
    with pytest.raises(SemiresError, match="finished run with another config.*refine"):
        run(semi_setup, tmp_path / "semi", cfg(steps=2, eval_every=2), RefineConfig(strategy="cpi"))


def test_confidence_filter_keeps_samples_whose_teacher_is_sure():
    prob = torch.zeros(4, 4, 4)
    prob[0, :2, :2] = 0.95  # sure of its mask
    prob[1, :2, :2] = 0.6   # unsure
    prob[2, :2, :2] = 0.8   # exactly at the threshold: kept (>=)
    pseudo = prob > 0.5
    pseudo[3] = False       # empty pseudo-mask: scores 0
    assert semi_mod.confident(prob, pseudo, 0.8).tolist() == [True, False, True, False]
    assert semi_mod.confident(prob, pseudo, 0.0).all()  # 0 = the paper: every sample


def test_confidence_filter_trains_when_nothing_is_kept_and_is_refused_offline(semi_setup, tmp_path):
    result = run(semi_setup, tmp_path / "semi", cfg(steps=2, eval_every=2, min_confidence=1.0))
    assert result["steps"] == 2 and all(torch.isfinite(torch.tensor(h["oIoU"])) for h in result["history"])
    s = semi_setup
    with pytest.raises(SemiresError, match="min_confidence"):
        train_semi(s["index"], s["split"].labeled, s["split"].unlabeled, s["burn_in"], tmp_path / "b",
                   cfg(mode="self_training", min_confidence=0.5), RefineConfig(), None, refined_dir=tmp_path,
                   tracking=OFF, progress=False)
