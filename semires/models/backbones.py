"""Hierarchical vision backbones split into stages, so fusion can run between them.

Both backbones expose the same stage interface on NCHW tensors (finest stage first):

- ``embed(images (B, 3, H, W)) -> (B, C_0, H/4, W/4)``
- ``stage(i, x) -> x``: stage i's blocks, shape kept (B, C_i, H_i, W_i)
- ``down(i, x) -> (B, C_{i+1}, ceil(H_i/2), ceil(W_i/2))`` for i < num_stages - 1
- ``out_norm(i, x) -> x``: the normalisation applied to the feature handed to the decoder
- ``channels``: [C_0, ..., C_{S-1}]; strides are 4, 8, 16, 32.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from semires.errors import SemiresError
from semires.models.decoder import conv_bn_relu

# metadata "format" of a pretrained-backbone file (semires.pretrain writes it)
BACKBONE_FORMAT = "semires-backbone-1"


def drop_path(x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic depth: zero a residual branch per sample with probability ``p`` (rescaled by 1 / (1 - p)
    otherwise) while training; the identity in eval mode or with ``p`` 0. x: (B, ...). ``generator``
    (on x's device) draws the samples kept; None = torch's global generator."""
    if not training or p <= 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
    keep.bernoulli_(1.0 - p, generator=generator)
    return x * keep.div_(1.0 - p)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs + identity); (B, C, H, W) -> (B, C, H, W).

    ``drop_path`` (default 0) drops the residual branch per sample while training (stochastic depth);
    the SemiRES student sets it as its own noise, the teacher (always in eval mode) never applies it.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.drop_path = 0.0
        self.noise_generator: torch.Generator | None = None
        self.body = nn.Sequential(conv_bn_relu(channels, channels),
                                  nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + drop_path(self.body(x), self.drop_path, self.training, self.noise_generator))


class ConvBackbone(nn.Module):
    """A small ResNet-like net (strides 4/8/16/32) that trains from scratch on a CPU."""

    def __init__(self, channels: list[int], depths: list[int]):
        super().__init__()
        if len(channels) != len(depths) or not channels:
            raise ValueError(f"channels {channels} and depths {depths} must be non-empty and equally long")
        self.channels = list(channels)
        c0 = channels[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0 // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c0 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(c0 // 2, c0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(nn.Sequential(*[BasicBlock(c) for _ in range(d)]) for c, d in zip(channels, depths))
        self.downs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
            for a, b in itertools.pairwise(channels))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.stem(images)

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[i](x)

    def down(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.downs[i](x)

    def out_norm(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return x


def load_backbone_weights(backbone: ConvBackbone, path: str) -> None:
    """Load a pretrained-backbone file (``backbone.safetensors`` of the ``pretrain`` stage) into
    ``backbone``; its channels and depths must be the backbone's."""
    import json
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    file = Path(path)
    if not file.is_file():
        raise SemiresError("pretrained backbone weights not found", file,
                           "run the pretrain stage (dvc repro pretrain), or set model.backbone_weights: null")
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as exc:
        raise SemiresError(f"not a readable safetensors file ({exc})", file, "rerun the pretrain stage") from exc
    if meta.get("format") != BACKBONE_FORMAT:
        raise SemiresError("not a semires pretrained-backbone file", file, "point model.backbone_weights at the "
                           "pretrain stage's backbone.safetensors")
    shape = (json.loads(meta.get("channels", "null")), json.loads(meta.get("depths", "null")))
    depths = [len(s) for s in backbone.stages]
    if shape != (backbone.channels, depths):
        raise SemiresError(f"the weights are for channels {shape[0]} and depths {shape[1]}, the model has "
                           f"{backbone.channels} and {depths}", file,
                           "pretrain with the model section the burn-in uses (dvc repro pretrain)")
    backbone.load_state_dict(state, strict=True)


class SwinBackbone(nn.Module):
    """A transformers ``SwinModel``'s patch embedding and stages, run stage by stage.

    Only the parts LAVT uses are kept (no final layernorm / pooler), so every parameter trains.
    """

    def __init__(self, swin: nn.Module):
        super().__init__()
        cfg = swin.config
        self.embeddings = swin.embeddings
        self.layers = swin.encoder.layers
        self.channels = [int(cfg.embed_dim * 2 ** i) for i in range(len(cfg.depths))]
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.channels)

    @staticmethod
    def _tokens(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])

    @staticmethod
    def _nchw(tokens: torch.Tensor, dims: tuple[int, int]) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], dims[0], dims[1])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        tokens, dims = self.embeddings(images)
        return self._nchw(tokens, tuple(dims))

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        tokens, dims = self._tokens(x)
        for blk in self.layers[i].blocks:
            # always_partition: pad to whole windows as the segmentation Swin (and LAVT) does, instead
            # of shrinking the window below its relative-position table at small resolutions
            out = blk(tokens, dims, always_partition=True)
            tokens = out[0] if isinstance(out, (tuple, list)) else out
        return self._nchw(tokens, dims)

    def down(self, i: int, x: torch.Tensor) -> torch.Tensor:
        tokens, dims = self._tokens(x)
        tokens = self.layers[i].downsample(tokens, dims)
        return self._nchw(tokens, ((dims[0] + 1) // 2, (dims[1] + 1) // 2))

    def out_norm(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.norms[i](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
