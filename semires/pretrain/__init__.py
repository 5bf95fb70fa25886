"""Backbone pretraining on a generated pool (the stand-in for ImageNet weights)."""

from semires.pretrain.config import PretrainConfig

__all__ = ["PretrainConfig"]
