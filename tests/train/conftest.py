from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """Folder of a 1-layer, 32-wide random BERT with the MiniLM tokenizer (saved once per session)."""
    from res_fixtures import write_tiny_text_encoder

    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def mini_index(tmp_path_factory):
    """Index of the hand-made 8-image REFER folder (train/val/testA/testB), read-only."""
    from mini_refer import write_mini_refer

    from semires.data.index import build_index

    root = tmp_path_factory.mktemp("mini_index")
    refer = write_mini_refer(root / "refer")
    return build_index(refer, refer / "images", root / "index.json", progress=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_text, mini_index):
    """One finished tiny supervised run (no MLflow): its folder, read-only."""
    from res_fixtures import tiny_burn_in, tiny_model_cfg

    from semires.tracking import TrackingConfig
    from semires.train.supervised import train_supervised

    out = tmp_path_factory.mktemp("trained") / "run"
    train_supervised(mini_index, None, out, tiny_model_cfg(tiny_text), tiny_burn_in(epochs=3),
                     TrackingConfig(enabled=False), progress=False)
    return out
