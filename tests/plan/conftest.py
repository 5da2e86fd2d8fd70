"""Fake step timings for planner tests: the planner times candidates through
``unetkit.plan.timing.time_steps``; tests replace it with a function of the config."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unetkit.plan import timing
from unetkit.plan.timing import StepTiming


@pytest.fixture
def fake_steps(monkeypatch):
    """``install(seconds, peak=None)``: every candidate's step takes ``seconds(config)``
    (and, like a CUDA timing, ``peak(config)`` bytes when given); returns the list of the
    configs timed, in order."""
    def install(seconds: Callable, peak: Callable | None = None) -> list:
        timed = []

        def fake(config):
            timed.append(config)
            return StepTiming(seconds(config), None if peak is None else peak(config))

        monkeypatch.setattr(timing, "time_steps", fake)
        return timed

    return install
