"""The mean teacher: an exponential moving average (EMA) of the student's weights.

After every optimizer step ``teacher = m * teacher + (1 - m) * student`` for every floating-point
parameter and buffer (vision backbone, fusion, decoder, and the text encoder when it is trained);
integer buffers (BatchNorm's step counters) are copied. Frozen parameters are identical in both
models and are skipped.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MeanTeacher(nn.Module):
    """Student and teacher of one architecture, checkpointed together.

    ``trainable_state_dict`` holds both models' trainable state under ``student.`` / ``teacher.``
    (a frozen text encoder is left out, as in single-model checkpoints).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None):
        super().__init__()
        self.student = student
        self.teacher = teacher if teacher is not None else copy.deepcopy(student)
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in ("student", "teacher"):
            model = getattr(self, name)
            fn = getattr(model, "trainable_state_dict", None)
            sd = fn() if fn is not None else model.state_dict()
            out.update({f"{name}.{k}": v for k, v in sd.items()})
        return out

    def _apply(self, fn, *args, **kwargs):
        self._pairs = None  # .to() / .cuda() may replace tensors: rebuild the EMA lists lazily
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True) -> MeanTeacher:
        self.student.train(mode)
        self.teacher.eval()  # the teacher predicts pseudo-labels in eval mode, always
        return self

    def _tracked(self):
        if self._pairs is None:
            s_params = dict(self.student.named_parameters())
            t_float, s_float, t_int, s_int = [], [], [], []
            for name, t in self.teacher.named_parameters():
                if s_params[name].requires_grad:
                    t_float.append(t.data)
                    s_float.append(s_params[name].data)
            s_bufs = dict(self.student.named_buffers())
            for name, t in self.teacher.named_buffers():
                (t_float if t.is_floating_point() else t_int).append(t)
                (s_float if t.is_floating_point() else s_int).append(s_bufs[name])
            self._pairs = (t_float, s_float, t_int, s_int)
        return self._pairs

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher <- momentum * teacher + (1 - momentum) * student`` (see module docstring)."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        t_float, s_float, t_int, s_int = self._tracked()
        if t_float:
            torch._foreach_lerp_(t_float, s_float, 1.0 - momentum)
        for t, s in zip(t_int, s_int):
            t.copy_(s)
