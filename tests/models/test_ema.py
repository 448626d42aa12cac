"""EMA teacher and cosine schedules (PEAC / Ark): end points, the update rule, no gradients, round-trips."""

import pytest
import torch
from torch import nn

from semantic_genesis.errors import CheckpointError, ConfigError
from semantic_genesis.models.ema import cosine_schedule, ema_update, load_teacher_state, make_teacher, teacher_state


def test_peac_momentum_schedule_starts_at_base_rises_and_stays_below_one():
    m = cosine_schedule(0.999, 1.0, epochs=100, steps_per_epoch=1000)
    assert m.shape == (100_000,)
    assert m[0].item() == pytest.approx(0.999)
    assert bool((m[1:] >= m[:-1]).all())
    assert m[-1].item() < 1.0
    assert m[-1].item() == pytest.approx(1.0, abs=1e-9)


def test_ark_coefficient_schedule_and_the_ark_plus_rule_agree_at_the_end():
    momentum = cosine_schedule(0.9, 1.0, epochs=200, steps_per_epoch=6)
    coefficient = cosine_schedule(0.0, 0.5, epochs=200, steps_per_epoch=6)
    assert coefficient[0].item() == 0.0 and coefficient[-1].item() == pytest.approx(0.5, abs=1e-5)
    assert torch.allclose((momentum - 0.9) * 5, coefficient, atol=1e-12)


def test_warmup_is_linear_then_cosine():
    s = cosine_schedule(1.0, 0.0, epochs=4, steps_per_epoch=2, warmup_epochs=1, warmup_start=0.5)
    assert s[:2].tolist() == [0.5, 1.0]
    assert s[2].item() == 1.0 and s.shape == (8,)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        cosine_schedule(1.0, 0.0, epochs=2, steps_per_epoch=2, warmup_epochs=2)


def test_ema_update_is_the_convex_combination_and_teacher_has_no_gradients():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    old = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student(torch.randn(8, 3)).sum().backward()  # updates BN running stats; grads on the student only
    ema_update(student, teacher, 0.9)
    for t_old, t_new, s in zip(old, teacher.parameters(), student.parameters()):
        assert torch.allclose(t_new, 0.9 * t_old + 0.1 * s)
        assert t_new.grad is None
    assert torch.equal(teacher[1].running_mean, student[1].running_mean)
    with pytest.raises(ConfigError, match="momentum"):
        ema_update(student, teacher, 1.5)


def test_independent_init_differs_and_state_round_trips():
    torch.manual_seed(0)
    student = nn.Linear(5, 2)
    twin = make_teacher(student, independent_init=True)
    assert not torch.equal(twin.weight, student.weight)
    copy = make_teacher(student)
    load_teacher_state(copy, teacher_state(twin))
    assert torch.equal(copy.weight, twin.weight)
    with pytest.raises(CheckpointError, match="'weight' has shape"):
        load_teacher_state(copy, {"weight": torch.zeros(3, 5), "bias": torch.zeros(2)})
