"""Checkpoints: round trips, RNG state, and refusal of checkpoints that carry code."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from semires.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_model,
    read_model_file,
    restore_rng,
    save_checkpoint,
    save_model,
)
from semires.errors import DataError, UnsafePickleError


class _RunsCode:
    """Unpickling this calls os.system: a checkpoint carrying it must never be loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "last.pt"
    torch.save({"format": "semires-checkpoint/1", "model": {"w": torch.ones(2)}, "payload": _RunsCode(marker)}, bad)
    with pytest.raises(UnsafePickleError, match="refused to load") as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(UnsafePickleError):
        read_model_file(bad)
    assert not marker.exists()


def test_checkpoint_with_custom_class_is_refused(tmp_path):
    bad = tmp_path / "custom.pt"
    torch.save({"obj": _RunsCode(tmp_path / "x")}, bad, pickle_protocol=2)
    raw = tmp_path / "raw.pt"  # a legacy (non-zip) plain pickle
    raw.write_bytes(pickle.dumps(_RunsCode(tmp_path / "y")))
    for path in (bad, raw):
        with pytest.raises(UnsafePickleError):
            load_checkpoint(path)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_damaged_or_foreign_checkpoints_are_clear_errors(tmp_path):
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(trunc)
    other = tmp_path / "other.pt"
    torch.save({"w": torch.ones(1)}, other)
    with pytest.raises(DataError, match="not a semires training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_rng_state_round_trip():
    state = capture_rng()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_training_checkpoint_round_trip(tmp_path, tiny_text):
    from res_fixtures import tiny_model_cfg

    from semires.engine.optim import build_optimizer, build_scheduler
    from semires.models import build_model

    model = build_model(tiny_model_cfg(tiny_text))
    opt = build_optimizer(model, 1e-3, 0.01)
    sched = build_scheduler(opt, 10, 0.9)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    path = save_checkpoint(tmp_path / "last.pt", model=model, optimizer=opt, scheduler=sched, step=1, epoch=0,
                           config={"a": 1}, extra={"best": None, "history": [{"mIoU": 1.5}]})
    doc = load_checkpoint(path)
    assert doc["step"] == 1 and doc["config"] == {"a": 1} and doc["extra"]["history"] == [{"mIoU": 1.5}]
    assert not any(k.startswith("text.") for k in doc["model"])  # frozen text weights are not stored
    opt2 = build_optimizer(model, 1e-3, 0.01)
    opt2.load_state_dict(doc["optimizer"])
    assert opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_model_file_round_trip_gives_identical_predictions(tmp_path, tiny_text):
    from res_fixtures import tiny_model_cfg

    from semires.models import build_model, load_tokenizer, tokenize

    cfg = tiny_model_cfg(tiny_text)
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    path = save_model(tmp_path / "best.safetensors", model, cfg, {"image_size": 32})
    loaded, cfg2, info = load_model(path)
    assert cfg2 == cfg and info == {"image_size": 32}
    ids, mask = tokenize(load_tokenizer(tiny_text), ["the square here"], 8)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model(x, ids, mask), loaded(x, ids, mask))


def test_safetensors_without_semires_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(DataError, match="metadata"):
        read_model_file(path)
