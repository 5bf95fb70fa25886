"""AdamW with parameter groups and the poly learning-rate schedule (LAVT / SemiRES)."""

from __future__ import annotations

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

# Parameters named like these are tables (positions, relative-position biases), not weights:
# decaying them towards zero only hurts.
NO_DECAY_NAME_PARTS = ("position", "pos_embed", "relative_position_bias_table", "absolute_pos")


def no_weight_decay(name: str, param) -> bool:
    """True for norms and biases (1-d) and position tables."""
    return param.ndim <= 1 or any(part in name for part in NO_DECAY_NAME_PARTS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable parameters: with and without weight decay.

    Frozen parameters (``requires_grad=False``, e.g. a frozen text encoder) are left out.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_weight_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> Optimizer:
    """AdamW over :func:`param_groups`; build it after the model is on its device.

    The fused kernel is used where torch has one (floating-point parameters on CPU or CUDA): the
    default on CPU is a Python loop of about ten small ops per parameter tensor, which took about 7 %
    of a 128 px CPU training step of the default model. Fused or not, it is the same update to float
    rounding, and deterministic.
    """
    groups = param_groups(model, weight_decay)
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def poly_factor(step: int, total_steps: int, power: float, warmup_steps: int = 0) -> float:
    """lr multiplier at ``step``: linear warm-up to 1, then ``(1 - step / total) ** power`` (>= 0)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, 1.0 - step / max(1, total_steps)) ** power


def build_scheduler(optimizer: Optimizer, total_steps: int, power: float, warmup_steps: int = 0) -> LambdaLR:
    """Per-step poly schedule; call ``scheduler.step()`` after every ``optimizer.step()``."""
    return LambdaLR(optimizer, lambda step: poly_factor(step, total_steps, power, warmup_steps))
