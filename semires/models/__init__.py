"""RES models: LAVT-style language-aware vision encoding, built by name from :class:`ModelConfig`."""

from semires.models.config import ModelConfig
from semires.models.lavt import LAVT
from semires.models.registry import available_models, build_model, register_model
from semires.models.text import (
    TextEncoder,
    default_text_encoder_path,
    load_tokenizer,
    share_text_cache,
    text_cache_disabled,
    tokenize,
)

__all__ = ["LAVT", "ModelConfig", "TextEncoder", "available_models", "build_model", "default_text_encoder_path",
           "load_tokenizer", "register_model", "share_text_cache", "text_cache_disabled", "tokenize"]
