"""LossMeter: losses summed on the device, read back every few steps, non-finite ones named."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.train.loss_meter import LossMeter, NonFiniteLoss


def test_sums_and_reads_every_few_steps():
    meter = LossMeter(torch.device("cpu"), every=3)
    meter.reset()
    due = []
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]):
        meter.add(torch.tensor(value), step)
        due.append(meter.due())
        if due[-1]:
            meter.read()
    # the first step at once (a loss to show), then every third
    assert due == [True, False, False, True, False, False]
    assert meter.read() == 11.0 and meter.reads == 3
    assert meter.total == 21.0 and meter.steps == 6 and meter.mean() == 3.5
    assert meter.read() == 0.0 and meter.reads == 3  # nothing pending: no read-back


def test_a_resumed_epoch_continues_its_sum():
    meter = LossMeter(torch.device("cpu"), every=10)
    meter.reset(total=6.0, steps=3)
    assert meter.mean() == 2.0 and not math.isnan(meter.mean())
    meter.add(torch.tensor(2.0), 3)
    assert not meter.due()
    meter.read()
    assert meter.mean() == 2.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_first_non_finite_step_is_named(bad):
    meter = LossMeter(torch.device("cpu"), every=4)
    meter.reset(total=1.0, steps=1)
    values = [0.5, bad, 0.7, math.nan]
    for step, value in enumerate(values, start=10):
        meter.add(torch.tensor(value), step)
    with pytest.raises(NonFiniteLoss) as raised:
        meter.read()
    error = raised.value
    assert (error.step, error.first, error.last) == (11, 10, 13)
    assert str(error.value) == str(bad) and f"training loss is {bad} at step 11" in str(error)


def test_nothing_is_read_back_before_read(monkeypatch):
    meter = LossMeter(torch.device("cpu"), every=100)
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _o=original, _n=name, **k: (
            reads.append(_n), _o(t, *a, **k))[1])
    meter.add(torch.tensor(1.0), 0)
    meter.add(torch.tensor(math.nan), 1)
    assert reads == []
    with pytest.raises(NonFiniteLoss):
        meter.read()
    assert reads == ["tolist"]
