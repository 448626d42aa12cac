"""Optimisers and learning-rate schedules from the ``optim`` config section."""

from __future__ import annotations

import math

import pytest
import torch

from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError
from semantic_genesis.training.optim import LRSchedule, build_optimizer


def _opt(*overrides):
    cfg = load_config(None, list(overrides)).optim
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(params, cfg)
    return opt, cfg


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name, cls):
    opt, _ = _opt(f"optim.name={name}", "optim.lr=0.5", "optim.momentum=0.8")
    assert isinstance(opt, cls) and opt.param_groups[0]["lr"] == 0.5
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.8
    with pytest.raises(ConfigError, match="optim.lr"):
        _opt(f"optim.name={name}", "optim.lr=0")


def test_official_step_schedule_halves_every_40_epochs():
    opt, cfg = _opt("optim.name=sgd", "optim.lr=1.0", "optim.scheduler=step", "optim.step_size=40", "optim.gamma=0.5")
    sched = LRSchedule(opt, cfg, total_steps=1000)
    assert [sched.apply(0, e) for e in (0, 39, 40, 79, 80, 120)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_cosine_with_warmup():
    opt, cfg = _opt("optim.lr=0.01", "optim.scheduler=cosine", "optim.warmup_steps=10", "optim.min_lr=0.0")
    sched = LRSchedule(opt, cfg, total_steps=100)
    assert sched.apply(0, 0) == pytest.approx(0.01 * 0.1 * 0.5 * (1 + math.cos(0)))
    assert sched.apply(9, 0) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert sched.apply(50, 0) == pytest.approx(0.005)
    assert sched.apply(100, 0) == pytest.approx(0.0)


def test_plateau_reduces_after_patience_and_round_trips():
    opt, cfg = _opt("optim.lr=1.0", "optim.scheduler=plateau", "optim.plateau_patience=2", "optim.gamma=0.5", "optim.min_lr=0.2")
    sched = LRSchedule(opt, cfg, total_steps=10)
    for value in (1.0, 0.5, 0.6, 0.7):  # improves twice, then two bad epochs
        sched.observe(value)
    assert sched.apply(0, 0) == 0.5
    for value in (0.9, 0.9, 0.9, 0.9, 0.9, 0.9):
        sched.observe(value)
    assert sched.apply(0, 0) == 0.2  # floored at min_lr
    other = LRSchedule(_opt("optim.lr=1.0", "optim.scheduler=plateau")[0], cfg, 10)
    other.load_state_dict(sched.state_dict())
    assert other.apply(0, 0) == 0.2 and other.plateau_best == 0.5
