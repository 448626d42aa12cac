"""Optimiser and learning-rate schedule from the ``optim`` config section.

The schedules are PyTorch's own (``torch.optim.lr_scheduler``), composed multiplicatively on the
optimiser's learning rate. :class:`LRSchedule` steps the per-step ones after every optimiser step and
the per-epoch ones at the end of every epoch; its state (each scheduler's ``state_dict``) is saved in
checkpoints together with the optimiser's, so a run resumes exactly.

* ``none``: constant.
* ``step``: ``StepLR(step_size, gamma)`` stepped per epoch: ``gamma ** (epoch // step_size)``
  (official Models Genesis: SGD, ×0.5 every 40 epochs).
* ``cosine``: ``CosineAnnealingLR(T_max=total steps, eta_min=min_lr)`` stepped per optimiser step:
  half a cosine from ``lr`` to ``min_lr`` (capped at the smallest group lr).
* ``plateau``: ``ReduceLROnPlateau`` fed the monitored validation value: ×``gamma`` after
  ``plateau_patience`` epochs without an improvement larger than ``train.min_delta``, floored at
  ``min_lr`` (the Keras ``ReduceLROnPlateau`` of the official Models / Semantic Genesis trainers, whose
  ``patience`` counts the bad epochs up to and including the reducing one; PyTorch's counts the epochs
  before it, so it gets ``plateau_patience - 1``).
* ``warmup_steps``: ``LinearLR`` from ``1/warmup_steps`` to 1 over the first ``warmup_steps``
  optimiser steps (step ``s`` has factor ``(s + 1) / warmup_steps``), multiplied into any schedule.

Against the former closed-form factors, PyTorch's chainable schedulers agree up to float rounding
(``step``, ``plateau``, warm-up: exact products of the same factors); ``cosine`` with ``min_lr > 0``
and a warm-up differs by less than ``min_lr * 1e-2`` because ``CosineAnnealingLR`` applies its floor
to the warmed-up rate (see tests/training/test_optim.py for the measured bound).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch.optim import lr_scheduler

from semantic_genesis.config import OptimConfig
from semantic_genesis.errors import CheckpointError, ConfigError


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.name`` over ``params`` (tensors or parameter-group dicts)."""
    if cfg.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.lr}")
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    raise ConfigError(f"optim.name: {cfg.name!r} is not one of 'adam', 'adamw', 'sgd'")


def _check(cfg: OptimConfig) -> None:
    if cfg.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {cfg.warmup_steps}")
    if cfg.scheduler == "step" and cfg.step_size <= 0:
        raise ConfigError(f"optim.step_size must be > 0 epochs for the step scheduler, got {cfg.step_size}")
    if cfg.scheduler == "plateau":
        if cfg.plateau_patience < 1:
            raise ConfigError(f"optim.plateau_patience must be >= 1 epoch for the plateau scheduler, got {cfg.plateau_patience}")
        if not 0.0 < cfg.gamma < 1.0:
            raise ConfigError(f"optim.gamma must be in (0, 1) for the plateau scheduler, got {cfg.gamma}")


class LRSchedule:
    """The ``optim.scheduler`` schedule (plus warm-up) as PyTorch lr schedulers on ``optimizer``.

    The engine reads the current rate from the optimiser, calls :meth:`step` after every optimiser
    step and :meth:`end_epoch` after every epoch's validation.

    Args:
        optimizer: the optimiser; each group's current ``lr`` is its base rate.
        cfg: the ``optim`` section.
        total_steps: planned optimiser steps of the run (``T_max`` of the cosine schedule).
        mode: ``"min"`` or ``"max"``, whether a lower or higher monitored value is better (plateau).
        min_delta: the smallest change that counts as an improvement (plateau; absolute).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int,
                 mode: str = "min", min_delta: float = 1e-4):
        _check(cfg)
        self.optimizer = optimizer
        self.cfg = cfg
        self.total_steps = max(int(total_steps), 1)
        base = [float(g["lr"]) for g in optimizer.param_groups]
        floor = min(cfg.min_lr / max(base), 1.0) if max(base) > 0 else 0.0  # as a factor of each group's lr
        self.per_step: list[lr_scheduler.LRScheduler] = []
        self.per_epoch: list[lr_scheduler.LRScheduler] = []
        self.cosine: lr_scheduler.CosineAnnealingLR | None = None
        self.plateau: lr_scheduler.ReduceLROnPlateau | None = None
        if cfg.warmup_steps > 1:
            self.per_step.append(lr_scheduler.LinearLR(
                optimizer, start_factor=1.0 / cfg.warmup_steps, end_factor=1.0, total_iters=cfg.warmup_steps - 1))
        if cfg.scheduler == "cosine":
            self.cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.total_steps,
                                                         eta_min=min(cfg.min_lr, min(base)))
            self.per_step.append(self.cosine)
        elif cfg.scheduler == "step":
            self.per_epoch.append(lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma))
        elif cfg.scheduler == "plateau":
            self.plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=mode, factor=cfg.gamma, patience=cfg.plateau_patience - 1, threshold=min_delta,
                threshold_mode="abs", cooldown=0, min_lr=[b * floor for b in base], eps=0.0)

    @property
    def lr(self) -> float:
        """The first group's current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self) -> None:
        """Advance the per-step schedulers (warm-up, cosine) after one optimiser step."""
        for scheduler in self.per_step:
            scheduler.step()

    def end_epoch(self, value: float | None) -> None:
        """Advance the per-epoch schedulers after an epoch; ``value`` is its monitored validation value
        (``None`` without validation, which leaves the plateau schedule as it is)."""
        for scheduler in self.per_epoch:
            scheduler.step()
        if self.plateau is not None and value is not None:
            self.plateau.step(value)

    def _schedulers(self) -> list[Any]:
        return [*self.per_step, *self.per_epoch, *([self.plateau] if self.plateau is not None else [])]

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.cfg.scheduler, "warmup_steps": self.cfg.warmup_steps,
                "states": [s.state_dict() for s in self._schedulers()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the schedulers (load the optimiser's state too: the current rate lives there).

        Raises:
            CheckpointError: the state is not of this schedule (another ``optim.scheduler`` or warm-up,
                or a checkpoint of a version before the PyTorch schedulers).
        """
        schedulers = self._schedulers()
        if (not isinstance(state.get("states"), list) or len(state["states"]) != len(schedulers)
                or state.get("scheduler") != self.cfg.scheduler or state.get("warmup_steps") != self.cfg.warmup_steps):
            was = (f"optim.scheduler={state['scheduler']} with warmup_steps={state.get('warmup_steps')}"
                   if "scheduler" in state else "an earlier version's hand-written schedule")
            raise CheckpointError(f"the checkpoint's lr schedule ({was}) is not this run's optim.scheduler="
                                  f"{self.cfg.scheduler} with warmup_steps={self.cfg.warmup_steps}; resume with the "
                                  "settings (and version) that wrote it, or start a new run")
        for scheduler, sub in zip(schedulers, state["states"]):
            scheduler.load_state_dict(sub)
        if self.cosine is not None:  # an extended run (more epochs) anneals to its new end
            self.cosine.T_max = self.total_steps
