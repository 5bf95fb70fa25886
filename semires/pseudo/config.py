"""Typed configuration of the offline pseudo-label stages (``params.yaml`` sections
``pseudo_label`` and ``refine_stage``; the refinement rule itself is :class:`semires.refine.RefineConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from semires.config import Section


class PseudoLabelConfig(Section):
    """The burn-in teacher's predictions on every unlabeled expression."""

    split: str = Field("train", description="split whose unlabeled images are pseudo-labelled")
    batch_size: int = Field(32, ge=1, description="expressions per forward pass")
    shard_size: int = Field(1024, ge=1, description="expressions per .npz shard (the unit of resume)")
    image_size: int | None = Field(None, ge=32, description="prediction size; None = the teacher's training size")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda ...")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast: auto = on CUDA only")
    num_workers: int = Field(0, ge=0, description="DataLoader workers")


class RefineStageConfig(Section):
    """Applying the refinement rule to stored pseudo-labels, and the quality report."""

    batch_size: int = Field(32, ge=1, description="expressions refined at once")
    overlays: int = Field(16, ge=0, description="examples drawn into overlays.png (truth, pseudo, refined)")
    device: str = Field("cpu", description="where refinement runs (cpu is fast enough: see refine_speed_bench)")
