"""Exponential-moving-average teachers and the cosine schedules that drive them (PEAC, Ark).

Both PEAC (Zhou et al., BMVC 2023) and Ark (Ma et al., MICCAI 2023) keep a *teacher* network whose
weights follow the student's: after each update ``theta_t <- m * theta_t + (1 - m) * theta_s``, with
the momentum ``m`` rising from a base value towards 1 on a cosine schedule (the schedule of DINO,
Caron et al., ICCV 2021, ``cosine_scheduler`` in the official ``utils.py`` of DINO, PEAC and Ark).
PEAC moves the teacher after every optimiser step (0.999 -> 1); Ark after every dataset pass or every
step (0.9 -> 1), and ramps its consistency coefficient on the same kind of schedule (0 -> 0.5).

The teacher is a deep copy of the student (or an independently initialised twin), never receives
gradients (``requires_grad_(False)``) and is updated under ``torch.no_grad()``; only parameters are
averaged, buffers (batch-norm statistics) are copied from the student.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0, warmup_start: float = 0.0) -> torch.Tensor:
    """The DINO cosine schedule: one value per step, ``epochs * steps_per_epoch`` of them (float64).

    A linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs * steps_per_epoch`` steps,
    then ``final + (base - final) * (1 + cos(pi * i / n)) / 2`` for ``i = 0 .. n - 1`` over the
    remaining ``n`` steps. The last value is close to, but not exactly, ``final`` (the official code's
    behaviour: PEAC's momentum ends at 1 - 1.5e-10 after 100 epochs of 1,000 steps).

    Args:
        base: value at the first step after warm-up (PEAC momentum 0.999; Ark momentum 0.9, Ark
            consistency coefficient 0).
        final: value approached at the end (1; Ark coefficient 0.5).
        epochs: length of the schedule in epochs (Ark: epochs x datasets when stepped per dataset pass).
        steps_per_epoch: values per epoch (1 for a schedule stepped per epoch or pass).
        warmup_epochs: epochs of linear warm-up before the cosine.
        warmup_start: value at the first warm-up step.

    Raises:
        ConfigError: a non-positive length or a warm-up as long as the schedule.
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ConfigError(f"cosine schedule: epochs and steps_per_epoch must be >= 1, got {epochs} and {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warmup = warmup_epochs * steps_per_epoch
    if warmup < 0 or warmup >= total:
        raise ConfigError(f"cosine schedule: warmup_epochs={warmup_epochs} must be in [0, epochs={epochs})")
    ramp = torch.linspace(warmup_start, base, warmup, dtype=torch.float64) if warmup else torch.empty(0, dtype=torch.float64)
    i = torch.arange(total - warmup, dtype=torch.float64)
    cosine = final + 0.5 * (base - final) * (1.0 + torch.cos(math.pi * i / (total - warmup)))
    return torch.cat([ramp, cosine])


def make_teacher(student: nn.Module, independent_init: bool = False) -> nn.Module:
    """A teacher for ``student``: its deep copy, without gradients, in eval mode.

    Args:
        student: the network the teacher follows.
        independent_init: re-initialise every submodule that has ``reset_parameters`` (Ark's official
            code builds the teacher as a second, separately initialised model); default: an exact copy
            (PEAC).
    """
    teacher = copy.deepcopy(student)
    if independent_init:
        for module in teacher.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


@torch.no_grad()
def ema_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """``theta_t <- momentum * theta_t + (1 - momentum) * theta_s`` for every parameter; buffers copied.

    Args:
        student: the trained network (any wrapper already removed).
        teacher: a network with the same parameter names and shapes.
        momentum: in [0, 1]; 1 leaves the teacher unchanged, 0 copies the student.

    Raises:
        ConfigError: a momentum outside [0, 1] or networks whose parameters differ.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ConfigError(f"EMA momentum must be in [0, 1], got {momentum}")
    student_params = dict(student.named_parameters())
    teacher_params = dict(teacher.named_parameters())
    if student_params.keys() != teacher_params.keys():
        missing = sorted(student_params.keys() ^ teacher_params.keys())
        raise ConfigError(f"EMA: student and teacher parameters differ (e.g. {missing[0]!r})")
    for name, teacher_param in teacher_params.items():
        teacher_param.mul_(momentum).add_(student_params[name].detach(), alpha=1.0 - momentum)
    student_buffers = dict(student.named_buffers())
    for name, buffer in teacher.named_buffers():
        if name in student_buffers:
            buffer.copy_(student_buffers[name])


def teacher_state(teacher: nn.Module) -> dict[str, torch.Tensor]:
    """The teacher's weights for a checkpoint (CPU copies, so that the file is device independent)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in teacher.state_dict().items()}


def load_teacher_state(teacher: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore :func:`teacher_state` exactly; :class:`CheckpointError` names the first key that differs."""
    own = teacher.state_dict()
    if own.keys() != state.keys():
        different = sorted(own.keys() ^ state.keys())
        raise CheckpointError(f"teacher state does not fit the network: key {different[0]!r} differs")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"teacher state does not fit the network: {key!r} has shape "
                                  f"{tuple(value.shape)}, expected {tuple(own[key].shape)}")
    teacher.load_state_dict(state)
