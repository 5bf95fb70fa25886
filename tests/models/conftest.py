from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """Folder of a 1-layer, 32-wide random BERT with the MiniLM tokenizer (saved once per session)."""
    from res_fixtures import write_tiny_text_encoder

    return write_tiny_text_encoder(tmp_path_factory.mktemp("tiny_bert"))
