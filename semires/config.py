"""Typed configuration: ``params.yaml`` validated into pydantic models, one per section.

Every threshold of the method is a named field here with its documented default (the published
SemiRES setting where one exists). Unknown keys are errors, so a typo never silently falls back
to a default. Stages read only their own section (DVC lists params per key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from semires.errors import SemiresError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class TrainingRuntime(Section):
    """Where and how a training loop runs: the fields every training section shares (burn_in, semi,
    pretrain). None of them changes what is learnt beyond float rounding."""

    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast: auto = on CUDA only")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1 ...")
    threads: int | None = Field(None, ge=1, description="torch intra-op CPU threads; None = torch's default")
    deterministic: bool = Field(True, description="deterministic kernels (CPU runs then resume bit-exactly)")


class SynthConfig(Section):
    """RefShapes generation (see :mod:`semires.data.synthetic`)."""

    preset: str = Field("default", description="a preset of semires.data.synthetic, e.g. 'default' (1500 "
                        "images at 128 px), 'tiny' (24 at 64 px, for tests) or 'large' (20,000 at 256 px)")
    seed: int = 0
    num_images: int | None = Field(None, description="override the preset's image count")
    image_size: int | None = Field(None, description="override the preset's square image side, pixels")


class DataConfig(Section):
    """Where the REFER-layout dataset lives and where its index goes."""

    dataset: str = Field("refshapes", description="refshapes, refcoco, refcoco+ or refcocog (name only)")
    refer_dir: str = Field("data/refshapes", description="folder with instances.json and refs(<split_by>).p")
    image_dir: str = Field("data/refshapes/images", description="folder with the image files")
    split_by: Literal["unc", "umd", "google"] = "unc"
    index_path: str = "data/index.json"
    check_images: bool = Field(True, description="decode every image once while indexing")
    synth: SynthConfig = SynthConfig()


class SplitConfig(Section):
    """Labeled/unlabeled partitions of train, per image."""

    ratios: list[Annotated[float, Field(gt=0, le=1)]] = Field([0.001, 0.01, 0.05, 0.1], min_length=1,
                                                              description="labeled fractions of train images, "
                                                              "each in (0, 1]")
    seed: int = 0
    out_dir: str = "data/splits"


class Params(Section):
    """The whole ``params.yaml``. Sections owned by later stages are kept as raw dicts until their
    subsystem registers a typed model (see :func:`section`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; a missing file gives the defaults.

    Raises :class:`SemiresError` naming the file and the offending keys on invalid content.
    """
    path = Path(path)
    raw: dict = {}
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SemiresError(f"not valid YAML ({exc})", path, "fix the syntax") from exc
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise SemiresError(_one_line(exc), path, "see the documented keys in params.yaml") from exc


def section(params: Params, name: str, model: type[BaseModel]) -> BaseModel:
    """Validate section ``name`` of ``params`` into ``model`` (defaults when absent)."""
    raw = getattr(params, name, None)
    if isinstance(raw, BaseModel):
        return raw
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise SemiresError(f"section '{name}': {_one_line(exc)}", None, "see params.yaml") from exc


def parse_overrides(section: type[BaseModel], items: list[str]) -> dict:
    """``KEY=VALUE`` command-line overrides of a section's fields, VALUE parsed as JSON when it is JSON
    (else kept as a string): ``["channels=[24,48]", "fusion_heads=8"]`` -> ``{"channels": [24, 48],
    "fusion_heads": 8}``. An unknown key is an error; the section model then validates the values."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in section.model_fields:
            raise SemiresError(f"override {item!r}: expected KEY=VALUE with KEY a field of {section.__name__}",
                               fix=f"fields: {', '.join(sorted(section.model_fields))}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _one_line(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
