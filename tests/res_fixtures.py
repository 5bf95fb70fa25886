"""Helpers for the tests: a tiny BERT text encoder on disk, tiny configs, benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def write_tiny_text_encoder(folder: Path, seed: int = 0) -> Path:
    """Save a 1-layer, 32-wide BERT (random weights) with the MiniLM tokenizer to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    from semires.models.text import default_text_encoder_path

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    src = default_text_encoder_path()
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)
    return folder


def tiny_model_cfg(text_path: Path, **kw):
    from semires.models import ModelConfig

    base = {"name": "lavt_tiny", "text_encoder": str(text_path), "channels": [8, 16, 16, 16], "depths": [1, 1, 1, 1],
            "decoder_channels": 8, "max_tokens": 8}
    base.update(kw)
    return ModelConfig(**base)


def tiny_burn_in(**kw):
    from semires.train.config import BurnInConfig

    base = {"epochs": 2, "batch_size": 4, "image_size": 32, "lr": 1e-3, "eval_batch_size": 8, "checkpoint_every": 2,
            "log_every": 1, "device": "cpu", "threads": 1, "overlays": 2}
    base.update(kw)
    return BurnInConfig(**base)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
