"""LR schedules: hand-computed values and properties."""

from __future__ import annotations

import math

import pytest

from unetkit.train.schedule import cosine_lr, lr_at, poly_lr, warmup_factor


def test_poly_hand_values():
    assert poly_lr(0, 100, 0.01) == pytest.approx(0.01)
    assert poly_lr(50, 100, 0.01) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(99, 100, 0.01) == pytest.approx(0.01 * 0.01**0.9)
    assert poly_lr(100, 100, 0.01) == 0.0
    assert poly_lr(150, 100, 0.01) == 0.0  # past the plan: stays at 0
    assert poly_lr(25, 100, 1.0, exponent=1.0) == pytest.approx(0.75)


def test_poly_matches_nnunet_formula():
    # nnU-Net's PolyLRScheduler: initial_lr * (1 - current_step / max_steps) ** 0.9
    for step in range(0, 1000, 37):
        assert poly_lr(step, 1000, 1e-2) == pytest.approx(1e-2 * (1 - step / 1000) ** 0.9)


def test_cosine_hand_values():
    assert cosine_lr(0, 100, 1.0) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0) == pytest.approx(0.0)
    expected = 0.1 + 0.45 * (1 + math.cos(math.pi / 4))
    assert cosine_lr(25, 100, 1.0, min_lr=0.1) == pytest.approx(expected)
    # warm-up: 10 steps, linear from base/11 to base, then cosine over the remaining 90 steps
    assert cosine_lr(0, 100, 1.0, warmup_steps=10) == pytest.approx(1 / 11)
    assert cosine_lr(9, 100, 1.0, warmup_steps=10) == pytest.approx(10 / 11)
    assert cosine_lr(10, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5)


def test_schedules_are_monotone_after_warmup():
    for name in ("poly", "cosine"):
        values = [lr_at(name, s, 200, 1e-3, warmup_steps=20) for s in range(20, 201)]
        assert all(a >= b for a, b in zip(values, values[1:], strict=False))
        warm = [lr_at(name, s, 200, 1e-3, warmup_steps=20) for s in range(21)]
        assert all(a < b for a, b in zip(warm, warm[1:], strict=False))


def test_lr_at_dispatch_and_errors():
    assert lr_at("constant", 7, 10, 0.1) == 0.1
    assert lr_at("constant", 0, 10, 0.1, warmup_steps=4) == pytest.approx(0.02)
    assert lr_at("poly", 3, 10, 0.1, warmup_steps=4) == pytest.approx(
        0.1 * 0.7**0.9 * warmup_factor(3, 4))
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        lr_at("step", 0, 10, 0.1)
    with pytest.raises(ValueError, match="total_steps must be positive"):
        poly_lr(0, 0, 0.1)


def test_replanned_budget_never_raises_the_learning_rate():
    from unetkit.config import Config
    from unetkit.runtime.checkpoint import TrainingState
    from unetkit.train.schedule import scheduled_lr

    config = Config()
    state = TrainingState(step=0, total_steps=100, warmup_steps=2, lr=0.0)
    seen = []
    for step in range(150):
        state.step = step
        if step == 30:
            state.total_steps = 300  # the budget re-plan finds time for 3x the iterations
        state.lr = scheduled_lr(config.train, state)
        seen.append(state.lr)
    assert seen[0] < seen[1] < seen[2]  # warm-up still rises
    assert all(b <= a for a, b in zip(seen[2:], seen[3:], strict=False))
    assert seen[30] == seen[29]  # held, not raised to poly(30 / 300)
    assert seen[149] < seen[29]  # and decaying again once the longer schedule is below it
    assert seen[149] == pytest.approx(poly_lr(149, 300, config.train.lr))


def test_a_replan_restarts_the_poly_decay_and_ends_at_the_new_end():
    from unetkit.config import Config
    from unetkit.runtime.checkpoint import TrainingState
    from unetkit.train.schedule import replan, scheduled_lr

    config = Config()
    base = config.train.lr
    straight, state = [], TrainingState(total_steps=100, lr=0.0)
    for step in range(100):  # an unchanged plan: exactly the poly curve
        state.step = step
        state.lr = scheduled_lr(config.train, state)
        straight.append(state.lr)
        replan(state, 100)
    assert straight == pytest.approx([poly_lr(s, 100, base) for s in range(100)])
    state = TrainingState(total_steps=100, lr=0.0)
    seen = []
    for step in range(150):
        state.step = step
        if step == 60:
            replan(state, 150)  # the budget buys 50 more steps
        state.lr = scheduled_lr(config.train, state)
        seen.append(state.lr)
    assert all(b <= a for a, b in zip(seen, seen[1:], strict=False))  # never rises
    assert seen[60] == pytest.approx(seen[59])  # continues from where it was
    expected = seen[59] * poly_lr(149 - 60, 150 - 60, 1.0)  # restarted at step 60
    assert seen[149] == pytest.approx(expected) and seen[149] < 0.05 * seen[59]
    assert seen[120] > 0.3 * seen[59]  # the added steps train: no flat tail near zero
    assert (state.anchor_step, state.anchor_lr) == (60, pytest.approx(seen[59]))
