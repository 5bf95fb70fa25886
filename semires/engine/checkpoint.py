"""Checkpoints without code: training state as a weights-only torch file, models as safetensors.

- ``last.pt`` (:func:`save_checkpoint` / :func:`load_checkpoint`): model (trainable part),
  optimizer, scheduler, step/epoch, best score, history, RNG states and the resolved config.
  It holds only tensors, numbers, strings and containers, and is read with
  ``torch.load(weights_only=True)``: a file whose pickle asks to import or call anything
  (``os.system``, a custom class) is refused with :class:`UnsafePickleError` before anything runs.
- ``*.safetensors`` (:func:`save_model` / :func:`load_model`): the weights of a model plus its
  :class:`ModelConfig` and metrics as JSON metadata; safetensors cannot carry code at all.

Both leave a frozen text encoder's weights out (they are reloaded from ``model.text_encoder``).
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semires import io
from semires.errors import DataError, SemiresError, UnsafePickleError
from semires.models import ModelConfig, build_model

MODEL_FORMAT = "semires-model/1"
CHECKPOINT_FORMAT = "semires-checkpoint/1"


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint keeps: all but a frozen text encoder's (see ``LAVT.trainable_state_dict``)."""
    fn = getattr(model, "trainable_state_dict", None)
    return fn() if fn is not None else model.state_dict()


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model``; every key of ``model_state(model)`` must be present and match."""
    expected = model_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad:
        detail = "; ".join(f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("shape mismatch", bad)) if keys)
        raise SemiresError(f"weights do not fit the model ({detail})", source,
                           "build the model from the config stored with these weights")
    model.load_state_dict(state, strict=False)


# -- RNG ------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (weights-only loadable)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"key": np_state[0], "pos": int(np_state[2]), "gauss": [int(np_state[3]), float(np_state[4])],
                       "state": torch.from_numpy(np_state[1].astype(np.int64))}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- training checkpoints ---------------------------------------------------------------------
def save_checkpoint(path: str | Path, *, model: nn.Module, optimizer, scheduler, step: int, epoch: int,
                    config: dict, extra: dict | None = None) -> Path:
    """Write the full training state to ``path`` atomically (see module docstring).

    ``config`` is the resolved configuration (JSON-able dict); ``extra`` any further plain state
    (best score, history, MLflow run id ...).
    """
    doc = {"format": CHECKPOINT_FORMAT, "step": int(step), "epoch": int(epoch),
           "model": model_state(model), "optimizer": optimizer.state_dict(),
           "scheduler": scheduler.state_dict() if scheduler is not None else None,
           "rng": capture_rng(), "config_json": json.dumps(config, sort_keys=True),
           "extra_json": json.dumps(extra or {}, sort_keys=True)}
    with io.atomic_path(path, suffix=".pt") as tmp:
        torch.save(doc, tmp)
    return Path(path)


def _safe_torch_load(path: Path, map_location) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(
            f"refused to load: the checkpoint's pickle asks for code, not just tensors ({str(exc).splitlines()[0]})",
            path, "only load checkpoints written by semires; never load .pt files from untrusted sources") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"not a readable checkpoint ({type(exc).__name__}: {exc})", path,
                        "delete it to start over, or restore it from a copy") from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint with ``weights_only=True`` (no code can run; see module docstring).

    Returns the dict written by :func:`save_checkpoint` with ``config`` and ``extra`` decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path, "check the path, or train first")
    doc = _safe_torch_load(path, map_location)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise DataError("not a semires training checkpoint", path, "pass a last.pt written by `semires train`")
    doc["config"] = json.loads(doc.pop("config_json"))
    doc["extra"] = json.loads(doc.pop("extra_json"))
    return doc


def resume_training(path: str | Path, *, model: nn.Module, optimizer, scheduler, device: str | torch.device,
                    check_config=None) -> tuple[int, dict]:
    """Restore a run from the checkpoint :func:`save_checkpoint` wrote: model, optimizer, scheduler
    and RNG states. ``check_config(saved_config, path)`` may refuse a checkpoint of another config
    (raise). Returns ``(step, extra)``."""
    doc = load_checkpoint(path, device)
    if check_config is not None:
        check_config(doc["config"], Path(path))
    load_model_state(model, doc["model"], path)
    optimizer.load_state_dict(doc["optimizer"])
    if scheduler is not None and doc["scheduler"] is not None:
        scheduler.load_state_dict(doc["scheduler"])
    restore_rng(doc["rng"])
    return int(doc["step"]), doc["extra"]


# -- model files --------------------------------------------------------------------------------
def save_model(path: str | Path, model: nn.Module, model_cfg: ModelConfig, info: dict | None = None) -> Path:
    """Write the model's weights + its config (+ ``info``, e.g. metrics, image_size) as safetensors."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model_state(model).items()}
    meta = {"format": MODEL_FORMAT, "model_config": model_cfg.model_dump_json(),
            "info": json.dumps(info or {}, sort_keys=True)}
    with io.atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def load_model_file(model: nn.Module, path: str | Path) -> None:
    """Load the weights of a :func:`save_model` file (e.g. a stage's ``best.safetensors``) into ``model``."""
    weights, _, _ = read_model_file(path)
    load_model_state(model, weights, path)


def read_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """(weights, model config, info) of a model file; ``.pt`` training checkpoints are accepted too."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError("model file not found", path, "check --checkpoint, or train first")
    if path.suffix != ".safetensors":
        doc = load_checkpoint(path)
        cfg = doc["config"]
        return doc["model"], ModelConfig.model_validate(cfg["model"]), {"image_size": cfg["burn_in"]["image_size"]}
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"not a readable safetensors file ({exc})", path, "re-export the model") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise DataError("safetensors file lacks semires model metadata", path,
                        "use a model file written by `semires train` (best.safetensors)")
    return state, ModelConfig.model_validate_json(meta["model_config"]), json.loads(meta.get("info", "{}"))


def load_model(path: str | Path, device: str | torch.device = "cpu",
               overrides: dict | None = None) -> tuple[nn.Module, ModelConfig, dict]:
    """Build the model a file describes and load its weights; returns (model in eval mode, config, info).

    ``overrides`` replaces config fields that do not change the weights' shapes (e.g. a moved
    ``text_encoder`` folder).
    """
    state, cfg, info = read_model_file(path)
    if overrides:
        cfg = ModelConfig.model_validate({**cfg.model_dump(), **overrides})
    # the file holds every weight: a pretrained backbone it started from is not read again
    model = build_model(cfg.model_copy(update={"backbone_weights": None}))
    load_model_state(model, state, path)
    return model.to(device).eval(), cfg, info
