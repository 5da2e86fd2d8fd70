"""Time-budget planner: the arithmetic, by hand; no wall-clock assertions."""

from __future__ import annotations

import pytest

from unetkit.train.budget import SAFETY_FRACTION, TimeBudget, format_seconds, plan_epochs


def test_plan_epochs_hand_computed():
    # 600 s budget, 30 s used, 0.5 s/step x 50 steps = 25 s/epoch, validation 10 s every 2 epochs
    # -> remaining = 600 - 30 - 0 - 10 (final validation) = 560; per epoch = 25 + 5 = 30 -> 18
    assert plan_epochs(600, 30, 0, 0.5, 50, 10, 2) == 18
    # overhead 2 s per epoch and 12 s safety: (600 - 30 - 12 - 10) / 32 = 17.1 -> 17
    assert plan_epochs(600, 30, 0, 0.5, 50, 10, 2, epoch_overhead_s=2, safety_s=12) == 17
    # epochs already done are counted in the total
    assert plan_epochs(600, 30, 5, 0.5, 50, 10, 2) == 23


def test_plan_epochs_never_below_done():
    assert plan_epochs(60, 100, 3, 0.5, 50, 10, 1) == 3
    assert plan_epochs(60, 0, 0, 10.0, 50, 10, 1) == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_measures_plans_and_expires(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("unetkit.train.budget.time.monotonic", clock)
    budget = TimeBudget(budget_s=100.0, steps_per_epoch=10, val_every=1, warmup_steps=2)
    assert not budget.ready()
    budget.record_step(5.0, 0)  # warm-up steps are not timed
    budget.record_step(5.0, 1)
    assert not budget.ready()
    budget.record_step(0.4, 2)
    budget.record_step(0.6, 3)
    assert budget.step_s == pytest.approx(0.5)
    clock.now += 20.0
    # remaining = 100 - 20 - 3 (safety) - 2 (val estimate) = 75; per epoch 5 + 2 = 7 -> 10 epochs
    assert budget.plan(epochs_done=0, val_estimate_s=2.0) == 10
    budget.record_validation(4.0)
    budget.record_validation(3.0)
    assert budget.val_s == 4.0  # the slowest validation is kept
    budget.record_overhead(1.0)
    # remaining = 80 - 3 - 4 = 73; per epoch = 5 + 1 + 4 = 10 -> 2 + 7 = 9
    assert budget.plan(epochs_done=2) == 9
    assert budget.eta(3) == pytest.approx(3 * 10 + 4)
    assert not budget.expired()
    clock.now += 100 - 20 - (100 * SAFETY_FRACTION + 4.0 + 1.0) + 0.01
    assert budget.expired()
    assert budget.remaining() < 10


def test_plan_before_measurement_is_an_error():
    with pytest.raises(RuntimeError, match="before any iteration"):
        TimeBudget(10.0, 5).plan(0)


@pytest.mark.parametrize(("seconds", "text"), [
    (9.5, "9.5s"), (75, "1m15s"), (3725.4, "1h02m05s"), (600, "10m00s"),
])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_final_work_is_reserved_in_the_plan_and_the_stop(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("unetkit.train.budget.time.monotonic", clock)
    budget = TimeBudget(budget_s=100.0, steps_per_epoch=10, val_every=1, warmup_steps=0)
    budget.record_step(0.5, 0)
    clock.now += 20.0
    # remaining = 100 - 20 - 3 (safety) = 77 with no validation; 5 s per epoch -> 15 epochs
    assert budget.plan(epochs_done=0, val_estimate_s=0.0) == 15
    budget.final_s = 14.0  # e.g. threshold calibration after the last epoch
    # the budget shrinks by 14 s (safety stays 3 % of the whole): (86 - 20 - 3) / 5 -> 12
    assert budget.plan(epochs_done=0) == 12
    clock.now += 100 - 20 - (100 * SAFETY_FRACTION + 14.0) - 0.01
    assert not budget.expired()
    clock.now += 0.02
    assert budget.expired()
