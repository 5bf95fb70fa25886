"""The RES model: LAVT-style language-aware vision encoding with a segmentation decoder."""

from __future__ import annotations

import torch
from torch import nn

from semires.models.category_head import CategoryHead
from semires.models.context import DirectionalContext
from semires.models.decoder import SegDecoder
from semires.models.fusion import FusionBlock
from semires.models.resize import resize_bilinear
from semires.models.text import TextEncoder


class LAVT(nn.Module):
    """Referring segmentation: pixel-word fusion after the backbone stages (all by default), then a decoder.

    forward(images, input_ids, attention_mask) -> logits
        images: (B, 3, H, W) float32, ImageNet-normalised (see :mod:`semires.engine.transforms`).
        input_ids: (B, L) int64 token ids; attention_mask: (B, L) int64 in {0, 1} (1 = real token).
        logits: (B, 2, H, W) float32 (also under autocast), class 1 = "the referred object"; argmax
            over dim 1 gives the mask.
    H and W may be any size; features are taken at strides 4/8/16/32, the decoder predicts at
    stride 4 (or ``detail_stride``) and the logits are upsampled bilinearly back to (H, W); a
    :class:`~semires.models.decoder.SubpixelHead` (``subpixel_channels``) predicts them at (H, W).
    With ``return_categories`` (a model with a category head, training only) it returns
    ``(logits, category_logits)``, the latter (B, categories + 1, H_s, W_s) at the finest stage the
    head reads (:class:`~semires.models.category_head.CategoryHead`). Stages in
    ``context_stages`` pass their fused features through a
    :class:`~semires.models.context.DirectionalContext`; ``fusion_stages`` (default: all) are the
    stages followed by a :class:`~semires.models.fusion.FusionBlock`.
    """

    def __init__(self, text: TextEncoder, backbone: nn.Module, fusion_heads: int = 1, fusion_dropout: float = 0.0,
                 decoder_channels: int = 64, num_classes: int = 2, coord_features: bool = False,
                 sentence_film: bool = False, detail_stride: int = 4, detail_channels: int = 16,
                 categories: int = 0, category_stages: tuple[int, ...] = (0, 1),
                 context_stages: tuple[int, ...] = (), context_channels: int = 16, subpixel_channels: int = 0,
                 fusion_stages: tuple[int, ...] | None = None):
        super().__init__()
        self.text = text
        self.backbone = backbone
        self.word_dropout = 0.0  # training-only dropout on the word features (set_noise)
        self.noise_generator: torch.Generator | None = None
        stages = len(backbone.channels)
        fusion_stages = range(stages) if fusion_stages is None else sorted(set(fusion_stages))
        if not fusion_stages or not all(0 <= s < stages for s in fusion_stages):
            raise ValueError(f"fusion_stages {fusion_stages} must name at least one of the backbone's {stages} stages")
        # keys "0".."3", so a model fusing at every stage has LAVT's (and earlier checkpoints') parameter names
        self.fusions = nn.ModuleDict(
            {str(s): FusionBlock(backbone.channels[s], text.hidden_size, fusion_heads, fusion_dropout, coord_features,
                                 sentence_film) for s in fusion_stages})
        self.decoder = SegDecoder(backbone.channels, decoder_channels, num_classes, detail_stride, detail_channels,
                                  subpixel_channels)
        self.category_stages = sorted(set(category_stages))
        if categories and not all(0 <= s < len(backbone.channels) for s in self.category_stages):
            raise ValueError(f"category_stages {category_stages} outside the backbone's "
                             f"{len(backbone.channels)} stages")
        self.category_head = (CategoryHead([backbone.channels[s] for s in self.category_stages], categories)
                           if categories else None)
        if not all(0 <= s < len(backbone.channels) for s in context_stages):
            raise ValueError(f"context_stages {context_stages} outside the backbone's {len(backbone.channels)} stages")
        self.contexts = nn.ModuleDict({str(s): DirectionalContext(backbone.channels[s], context_channels)
                                       for s in sorted(set(context_stages))})

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                return_categories: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        words = self.text(input_ids, attention_mask)                    # (B, L, Cl)
        # token positions that are padding in every expression of the batch are masked out of every
        # fusion, so dropping them computes the same function; pixel-word attention costs about
        # linearly in the words (on RefShapes a batch of 32 needs 15 of the 20 tokens on average).
        # Traced graphs (torch.export for MLflow, torch.compile) keep them: the length depends on data
        keep = attention_mask.shape[1]
        if not torch.compiler.is_compiling() and attention_mask.any():
            keep = int(attention_mask.any(dim=0).nonzero().max()) + 1
        words = words[:, :keep].transpose(1, 2).to(images.dtype)        # (B, Cl, L')
        if self.training and self.word_dropout > 0:
            kept = torch.rand(words.shape, generator=self.noise_generator, device=words.device) >= self.word_dropout
            words = words * kept.to(words.dtype) / (1.0 - self.word_dropout)
        word_mask = attention_mask[:, :keep].to(words.dtype)            # (B, L')
        x = self.backbone.embed(images)
        feats, visual = [], []
        last = len(self.backbone.channels) - 1
        for i in range(last + 1):
            x = self.backbone.stage(i, x)
            if return_categories and i in self.category_stages:
                visual.append(x)
            if str(i) in self.fusions:
                x = self.fusions[str(i)](x, words, word_mask)
            if str(i) in self.contexts:
                x = self.contexts[str(i)](x)
            feats.append(self.backbone.out_norm(i, x))
            if i < last:
                x = self.backbone.down(i, x)
        # float32 NCHW before the upsampling: under CPU autocast the decoder's logits are bf16 and (from
        # a channels-last model) NHWC with 2 channels, where the upsampling and its backward took 2x as
        # long, and the losses cast the full-size result to float32 anyway
        logits = resize_bilinear(self.decoder(feats, images).float().contiguous(), images.shape[-2:])
        if not return_categories:
            return logits
        if self.category_head is None:
            raise ValueError("return_categories needs a model built with categories > 0")
        return logits, self.category_head(visual)

    def set_noise(self, drop_path: float = 0.0, word_dropout: float = 0.0) -> None:
        """Training-only noise: stochastic depth ``drop_path`` on every residual block of a conv backbone
        and dropout ``word_dropout`` on the word features. Both are off in eval mode, so an EMA teacher
        (always in eval mode) never sees them; the SemiRES student sets them as its own noise."""
        if not (0.0 <= drop_path < 1.0 and 0.0 <= word_dropout < 1.0):
            raise ValueError(f"drop_path {drop_path} and word_dropout {word_dropout} must be in [0, 1)")
        self.word_dropout = float(word_dropout)
        for m in self.backbone.modules():
            if hasattr(m, "drop_path"):
                m.drop_path = float(drop_path)

    def seed_noise(self, generator: torch.Generator | None) -> None:
        """Draw the training noise of the next forward passes from ``generator`` (on the model's device),
        so that a step's noise follows from its seed and a resumed run repeats it; None = torch's global RNG."""
        self.noise_generator = generator
        for m in self.backbone.modules():
            if hasattr(m, "noise_generator"):
                m.noise_generator = generator

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The state a checkpoint must carry: everything except a frozen text encoder's weights
        (those are reloaded from ``model.text_encoder``)."""
        sd = self.state_dict()
        if self.text.frozen:
            sd = {k: v for k, v in sd.items() if not k.startswith("text.")}
        return sd
