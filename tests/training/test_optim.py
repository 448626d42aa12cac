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


def _curve(sched: LRSchedule, steps_per_epoch: int, epochs: int, values=None) -> list[float]:
    """The lr of every optimiser step, driven as the engine drives it (values: per-epoch validation)."""
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(sched.lr)
            sched.optimizer.step()
            sched.step()
        sched.end_epoch(None if values is None else values[epoch])
    return lrs


def _closed_form(cfg, step: int, epoch: int, total: int, plateau: float = 1.0) -> float:
    """The schedule's factor written out (the former hand-written schedule), for comparison."""
    floor = min(cfg.min_lr / cfg.lr, 1.0)
    f = {"none": 1.0, "plateau": plateau, "step": cfg.gamma ** (epoch // max(cfg.step_size, 1)),
         "cosine": floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))}[cfg.scheduler]
    if step < cfg.warmup_steps:
        f *= (step + 1) / cfg.warmup_steps
    return cfg.lr * f


def test_schedulers_are_torch_lr_schedulers():
    from torch.optim import lr_scheduler

    opt, cfg = _opt("optim.scheduler=cosine", "optim.warmup_steps=5")
    sched = LRSchedule(opt, cfg, total_steps=50)
    assert [type(s) for s in sched.per_step] == [lr_scheduler.LinearLR, lr_scheduler.CosineAnnealingLR]
    opt, cfg = _opt("optim.scheduler=step")
    assert [type(s) for s in LRSchedule(opt, cfg, 10).per_epoch] == [lr_scheduler.StepLR]
    opt, cfg = _opt("optim.scheduler=plateau")
    assert isinstance(LRSchedule(opt, cfg, 10).plateau, lr_scheduler.ReduceLROnPlateau)


def test_official_step_schedule_halves_every_40_epochs():
    opt, cfg = _opt("optim.name=sgd", "optim.lr=1.0", "optim.scheduler=step", "optim.step_size=40", "optim.gamma=0.5")
    lrs = _curve(LRSchedule(opt, cfg, total_steps=2 * 121), steps_per_epoch=2, epochs=121)
    assert [lrs[2 * e] for e in (0, 39, 40, 79, 80, 120)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    assert lrs[2 * 39 + 1] == 1.0  # changes at the epoch boundary only


def test_cosine_with_warmup():
    opt, cfg = _opt("optim.lr=0.01", "optim.scheduler=cosine", "optim.warmup_steps=10", "optim.min_lr=0.0")
    lrs = _curve(LRSchedule(opt, cfg, total_steps=100), steps_per_epoch=101, epochs=1)
    assert lrs[0] == pytest.approx(0.01 * 0.1 * 0.5 * (1 + math.cos(0)))
    assert lrs[9] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert lrs[50] == pytest.approx(0.005)
    assert lrs[100] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("overrides", [
    ("optim.scheduler=none", "optim.warmup_steps=7"),
    ("optim.scheduler=step", "optim.step_size=3", "optim.gamma=0.1", "optim.warmup_steps=25"),
    ("optim.scheduler=cosine", "optim.min_lr=0"),
    ("optim.scheduler=cosine", "optim.min_lr=1e-5", "optim.warmup_steps=30"),
])
def test_torch_schedules_follow_the_closed_form(overrides):
    """Every step's lr equals the closed-form schedule (cosine with a floor and warm-up: within 1e-2 min_lr)."""
    opt, cfg = _opt("optim.lr=1e-3", *overrides)
    spe, epochs = 20, 20
    lrs = _curve(LRSchedule(opt, cfg, total_steps=spe * epochs), spe, epochs)
    expected = [_closed_form(cfg, s, s // spe, spe * epochs) for s in range(spe * epochs)]
    tol = 1e-2 * cfg.min_lr if cfg.scheduler == "cosine" and cfg.warmup_steps and cfg.min_lr else 1e-15
    assert max(abs(a - b) for a, b in zip(lrs, expected)) <= tol
    assert lrs[0] == pytest.approx(expected[0], rel=1e-12) and lrs[-1] == pytest.approx(expected[-1], rel=1e-6)


def test_plateau_reduces_after_patience_and_floors():
    opt, cfg = _opt("optim.lr=1.0", "optim.scheduler=plateau", "optim.plateau_patience=2", "optim.gamma=0.5", "optim.min_lr=0.2")
    sched = LRSchedule(opt, cfg, total_steps=10)
    lrs = []
    for value in (1.0, 0.5, 0.6, 0.7, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5):
        sched.end_epoch(value)
        lrs.append(sched.lr)
    # improves twice, two bad epochs (x0.5), improves, then bad epochs halve every 2 down to the floor
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]
    assert sched.plateau.best == 0.45
    opt, cfg = _opt("optim.lr=1.0", "optim.scheduler=plateau", "optim.plateau_patience=1", "optim.gamma=0.5")
    maximise = LRSchedule(opt, cfg, 10, mode="max", min_delta=0.1)
    for value in (0.5, 0.55, 0.7):  # +0.05 is below min_delta: one bad epoch (x0.5); +0.2 improves
        maximise.end_epoch(value)
    assert maximise.lr == 0.5 and maximise.plateau.best == 0.7
    maximise.end_epoch(None)  # an epoch without validation leaves it alone
    assert maximise.lr == 0.5


@pytest.mark.parametrize("overrides", [
    ("optim.scheduler=cosine", "optim.warmup_steps=6", "optim.min_lr=1e-5"),
    ("optim.scheduler=step", "optim.step_size=2", "optim.warmup_steps=3"),
    ("optim.scheduler=plateau", "optim.plateau_patience=1", "optim.min_lr=1e-4"),
])
def test_resume_from_state_dicts_is_exact(overrides):
    """Saving optimiser + schedule mid-run and loading them into fresh ones continues the same lr curve."""
    opt, cfg = _opt("optim.lr=1e-3", *overrides)
    values = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.9]
    full = _curve(LRSchedule(opt, cfg, total_steps=40), 5, 8, values)
    opt, _ = _opt("optim.lr=1e-3", *overrides)
    first = LRSchedule(opt, cfg, total_steps=40)
    head = _curve(first, 5, 3, values[:3])
    state = {"optimizer": opt.state_dict(), "schedule": first.state_dict()}
    state = torch.load(_roundtrip(state), weights_only=True)  # as checkpoints store it
    opt2, _ = _opt("optim.lr=1e-3", *overrides)
    second = LRSchedule(opt2, cfg, total_steps=40)
    opt2.load_state_dict(state["optimizer"])
    second.load_state_dict(state["schedule"])
    tail = _curve(second, 5, 5, values[3:])
    assert head + tail == full  # bit for bit


def _roundtrip(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_schedule_state_of_other_settings_is_refused():
    from semantic_genesis.errors import CheckpointError

    opt, cfg = _opt("optim.scheduler=cosine")
    state = LRSchedule(opt, cfg, 10).state_dict()
    opt, cfg = _opt("optim.scheduler=step")
    with pytest.raises(CheckpointError, match="optim.scheduler=cosine with warmup_steps=0.*is not this run's optim.scheduler=step"):
        LRSchedule(opt, cfg, 10).load_state_dict(state)
    with pytest.raises(CheckpointError, match="earlier version's hand-written schedule"):
        LRSchedule(opt, cfg, 10).load_state_dict({"plateau_factor": 1.0, "plateau_best": None, "plateau_bad": 0})


def test_bad_schedule_settings():
    for overrides, message in [(("optim.scheduler=plateau", "optim.plateau_patience=0"), "plateau_patience must be >= 1"),
                               (("optim.scheduler=plateau", "optim.gamma=1.0"), r"gamma must be in \(0, 1\)"),
                               (("optim.scheduler=step", "optim.step_size=0"), "step_size must be > 0")]:
        opt, cfg = _opt(*overrides)
        with pytest.raises(ConfigError, match=message):
            LRSchedule(opt, cfg, 10)
