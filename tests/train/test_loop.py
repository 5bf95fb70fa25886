"""The step loop every trainer runs: stretches, evaluation hook, logging, checkpoints, kill and resume."""

from __future__ import annotations

import pytest
import torch

from semires import io
from semires.engine.loop import TRAIN_LOG, StepLoop
from semires.engine.optim import build_optimizer, build_scheduler
from semires.errors import SemiresError
from semires.tracking import Tracker, TrackingConfig

TOTAL, EVERY = 10, 4


class Killed(Exception):
    pass


def _train(out, kill_at: int | None = None, evaluations: list | None = None):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = build_optimizer(model, 0.1, 0.0)
    sched = build_scheduler(opt, TOTAL, 0.9, 0)
    state = {"history": []}
    loop = StepLoop(out, model=model, optimizer=opt, scheduler=sched, device="cpu", config={"lr": 0.1},
                    check_config=None, state=state, epoch_of=lambda step: step // EVERY)

    def batches(step, stop):
        for at in range(step, stop):  # each step's data follows from the step: resumable anywhere
            g = torch.Generator().manual_seed(at)
            yield torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)

    def train_step(batch, step):
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.detach()}

    def after(step):
        state["history"].append(step)
        if evaluations is not None:
            evaluations.append(step)

    def hook(step):
        if step == kill_at:
            raise Killed

    with Tracker(TrackingConfig(enabled=False), out).run("t") as trk:
        loop.run(trk, total=TOTAL, segment_end=lambda s: (s // EVERY + 1) * EVERY, batches=batches,
                 train_step=train_step, after_segment=after, log_every=3, checkpoint_every=2,
                 desc=lambda s, e: "t", progress=False, step_hook=hook)
        loop.finish(trk, {"history": state["history"]}, summary={"steps": TOTAL})
    return model, state


def test_stretches_end_at_each_evaluation_and_at_the_end(tmp_path):
    evals = []
    _, state = _train(tmp_path / "a", evaluations=evals)
    assert evals == [4, 8, 10]
    assert [r["step"] for r in state[TRAIN_LOG]] == [3, 4, 6, 8, 9, 10]  # every 3rd step and at each stretch's end
    assert io.is_complete(tmp_path / "a") and io.read_json(tmp_path / "a" / "metrics.json")["history"] == [4, 8, 10]


@pytest.mark.parametrize("kill_at", [3, 4, 9])
def test_a_killed_run_resumes_to_the_same_weights(tmp_path, kill_at):
    ref, _ = _train(tmp_path / "ref")
    with pytest.raises(Killed):
        _train(tmp_path / "run", kill_at=kill_at)
    assert not io.is_complete(tmp_path / "run")
    model, state = _train(tmp_path / "run")
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert state["history"] == [4, 8, 10]  # no evaluation is lost or repeated


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    with pytest.raises(Killed):
        _train(tmp_path / "run", kill_at=3)

    def refuse(saved, path):
        raise SemiresError("other config", path, "start over")

    model = torch.nn.Linear(3, 1)
    opt = build_optimizer(model, 0.1, 0.0)
    with pytest.raises(SemiresError, match="other config"):
        StepLoop(tmp_path / "run", model=model, optimizer=opt, scheduler=build_scheduler(opt, TOTAL, 0.9, 0),
                 device="cpu", config={"lr": 0.2}, check_config=refuse, state={})
