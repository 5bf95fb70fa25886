"""Thresholds of the data-quality gates (``checks`` section of params.yaml).

Every bound a gate enforces is a named field here; a stage's gate reads only its subsection,
so DVC can depend on e.g. ``checks.candidates`` alone.
"""

from __future__ import annotations

from pydantic import Field

from semires.config import Section


class DataChecks(Section):
    """Index and label-split gate."""

    min_mask_area: int = Field(1, ge=1, description="smallest object mask, pixels (an empty mask cannot be "
                                                    "referred to)")
    min_sentence_chars: int = Field(1, ge=1, description="shortest expression after stripping blanks, characters")
    min_labeled_images: int = Field(1, ge=1, description="fewest labeled train images a split may have")


class CandidateChecks(Section):
    """SAM candidate gate (per image of a shard)."""

    min_per_image: int = Field(1, ge=0, description="fewest candidates an image may have (0 allows images with none)")
    max_per_image: int = Field(512, ge=1, description="most candidates an image may have")
    min_area: int = Field(1, ge=1, description="smallest candidate mask, pixels")
    max_area_frac: float = Field(1.0, gt=0, le=1, description="largest candidate mask as a fraction of its image")
    max_rle_chars_per_pixel: float = Field(
        0.25, gt=0, description="RLE string length over image pixels; larger means a noisy, speckled mask")


class LabelChecks(Section):
    """Pseudo-label and refined-label gates."""

    min_fg_frac: float = Field(0.0, ge=0, le=1, description="smallest mean pseudo-mask foreground fraction of a set")
    max_fg_frac: float = Field(0.9, ge=0, le=1, description="largest mean pseudo-mask foreground fraction of a set")
    min_match_rate: float = Field(
        0.05, ge=0, le=1, description="fewest refined labels matched to a SAM candidate (IOM or CPI), fraction")
    min_area_ratio: float = Field(0.1, gt=0, description="smallest refined/pseudo mask area ratio of a matched label")
    max_area_ratio: float = Field(10.0, gt=0, description="largest refined/pseudo mask area ratio of a matched label")
    area_ratio_mostly: float = Field(
        0.9, gt=0, le=1, description="fraction of matched labels whose area ratio must lie in range")


class ChecksConfig(Section):
    """The ``checks`` section: one subsection per gate."""

    data: DataChecks = DataChecks()
    candidates: CandidateChecks = CandidateChecks()
    labels: LabelChecks = LabelChecks()
