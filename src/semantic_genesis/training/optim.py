"""Optimiser and learning-rate schedule from the ``optim`` config section.

The schedule is a multiplicative factor on each parameter group's base learning rate, recomputed
before every optimiser step from ``(step, epoch)`` plus, for ``plateau``, a small state updated after
each validation. Being a function of the counters (and a state saved in checkpoints), it resumes
exactly.

* ``none``: constant.
* ``step``: ``gamma ** (epoch // step_size)`` (official Models Genesis: SGD, ×0.5 every 40 epochs).
* ``cosine``: half a cosine from 1 to ``min_lr / lr`` over the run's total steps.
* ``plateau``: ×``gamma`` after ``plateau_patience`` epochs without validation improvement, floored
  at ``min_lr`` (the Keras Models/Semantic Genesis trainers' ReduceLROnPlateau).
* ``warmup_steps``: linear ramp from ``1/warmup_steps`` to 1 over the first steps (all schedules).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from semantic_genesis.config import OptimConfig
from semantic_genesis.errors import ConfigError


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


class LRSchedule:
    """Sets ``group["lr"] = group["base_lr"] * factor(step, epoch)`` before each optimiser step.

    Args:
        optimizer: the optimiser; each group's current ``lr`` is taken as its base rate.
        cfg: the ``optim`` section.
        total_steps: planned optimiser steps of the run (cosine schedule).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
        if cfg.scheduler == "step" and cfg.step_size <= 0:
            raise ConfigError(f"optim.step_size must be > 0 epochs for the step scheduler, got {cfg.step_size}")
        self.optimizer = optimizer
        self.cfg = cfg
        self.total_steps = max(int(total_steps), 1)
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.plateau_factor = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0

    def factor(self, step: int, epoch: int) -> float:
        """The lr multiplier for optimiser step ``step`` (0-based) in ``epoch``."""
        cfg = self.cfg
        base_lr = max(g["base_lr"] for g in self.optimizer.param_groups)
        floor = min(cfg.min_lr / base_lr, 1.0) if base_lr > 0 else 0.0
        if cfg.scheduler == "step":
            f = cfg.gamma ** (epoch // cfg.step_size)
        elif cfg.scheduler == "cosine":
            progress = min(step / self.total_steps, 1.0)
            f = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif cfg.scheduler == "plateau":
            f = self.plateau_factor
        else:
            f = 1.0
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            f *= (step + 1) / cfg.warmup_steps
        return f

    def apply(self, step: int, epoch: int) -> float:
        """Set every group's lr for this step; returns the first group's lr."""
        f = self.factor(step, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f
        return self.optimizer.param_groups[0]["lr"]

    def observe(self, value: float, mode: str = "min", min_delta: float = 1e-4) -> None:
        """Feed an epoch's validation metric to the plateau schedule (ignored by the others)."""
        if self.cfg.scheduler != "plateau":
            return
        better = (
            self.plateau_best is None
            or (mode == "min" and value < self.plateau_best - min_delta)
            or (mode == "max" and value > self.plateau_best + min_delta)
        )
        if better:
            self.plateau_best, self.plateau_bad = value, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad >= self.cfg.plateau_patience:
            base_lr = max(g["base_lr"] for g in self.optimizer.param_groups)
            floor = min(self.cfg.min_lr / base_lr, 1.0) if base_lr > 0 else 0.0
            self.plateau_factor = max(self.plateau_factor * self.cfg.gamma, floor)
            self.plateau_bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_factor": self.plateau_factor, "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_factor = float(state["plateau_factor"])
        self.plateau_best = None if state["plateau_best"] is None else float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])
