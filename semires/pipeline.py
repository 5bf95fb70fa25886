"""Pipeline-level configuration: the ``pipeline``, ``evaluate`` and ``report`` sections, and the
registry of every params.yaml section with its model (for validation and the params tests).

Each subsystem keeps its own section model next to its code; :func:`section_models` lists them all.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from semires.config import Section


class PipelineConfig(Section):
    """The ``pipeline`` section: what one execution of the stage chain trains on."""

    label_ratio: float = Field(0.1, gt=0, le=1, description="labeled fraction the chain trains on; must be one of "
                               "split.ratios (its split folder is <split.out_dir>/<ratio_name>)")


class EvaluateConfig(Section):
    """The ``evaluate`` stage: the student on the held-out splits (see ``evaluate_checkpoint``)."""

    splits: list[str] | None = Field(None, description="splits to evaluate; None = every held-out split present "
                                     "(val, test, testA, testB)")
    batch_size: int = Field(32, ge=1, description="expressions per forward pass")
    image_size: int | None = Field(None, ge=32, description="input side; None = the size the model was trained at")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda ...")
    amp: Literal["auto", "bf16", "off"] = Field("auto", description="bf16 autocast: auto = on CUDA only")
    overlays: int = Field(12, ge=0, description="expressions drawn into each split's overlay grid")
    num_workers: int = Field(0, ge=0, description="DataLoader workers")


class ReportConfig(Section):
    """The ``report`` stage: the run's summary table and the model registry entry."""

    register_model: bool = Field(True, description="register the student in the MLflow model registry "
                                 "(needs a tracking server; skipped without one)")
    model_name: str = Field("semires-student", description="registered model name")
    primary_split: str = Field("val", description="split whose mIoU / oIoU tag the registered version")


def section_models() -> dict[str, type]:
    """Every params.yaml section and its pydantic model (imported lazily: some packages import torch)."""
    from semires.candidates.config import CandidatesConfig
    from semires.checks.config import ChecksConfig
    from semires.config import DataConfig, SplitConfig
    from semires.models.config import ModelConfig
    from semires.pretrain.config import PretrainConfig
    from semires.pseudo.config import PseudoLabelConfig, RefineStageConfig
    from semires.refine.config import RefineConfig
    from semires.tracking import TrackingConfig
    from semires.train.config import BurnInConfig, SupervisedConfig
    from semires.train.semi_config import SemiConfig

    return {"data": DataConfig, "split": SplitConfig, "pipeline": PipelineConfig, "checks": ChecksConfig,
            "mlflow": TrackingConfig, "candidates": CandidatesConfig, "model": ModelConfig, "pretrain": PretrainConfig,
            "burn_in": BurnInConfig, "supervised": SupervisedConfig,
            "pseudo_label": PseudoLabelConfig, "refine": RefineConfig, "refine_stage": RefineStageConfig,
            "semi": SemiConfig, "evaluate": EvaluateConfig, "report": ReportConfig}


def validate_params(params) -> dict[str, Any]:
    """Validate every section of ``params`` (a :class:`semires.config.Params`); returns name -> model.

    Raises :class:`semires.errors.SemiresError` naming the section and keys on an invalid value,
    or on a top-level section no model knows (a typo would otherwise be ignored).
    """
    from semires.config import section
    from semires.errors import SemiresError

    models = section_models()
    unknown = sorted(set(params.model_dump()) - set(models))
    if unknown:
        raise SemiresError(f"unknown params section(s) {unknown}", None, f"known sections: {', '.join(models)}")
    return {name: section(params, name, model) for name, model in models.items()}


def pipeline_summary(params) -> dict[str, Any]:
    """What tells executions apart in tables: dataset, preset, label ratio, strategy, generator, model.

    ``params`` is :class:`semires.config.Params`; each section is validated by its own model.
    """
    from semires.candidates.config import CandidatesConfig
    from semires.config import section
    from semires.models.config import ModelConfig
    from semires.refine.config import RefineConfig

    return {"dataset": params.data.dataset, "preset": params.data.synth.preset,
            "label_ratio": section(params, "pipeline", PipelineConfig).label_ratio,
            "strategy": section(params, "refine", RefineConfig).name,
            "candidates": section(params, "candidates", CandidatesConfig).generator,
            "model": section(params, "model", ModelConfig).name}
