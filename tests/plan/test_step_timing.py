"""The planner times the step training will run: augmented in the step only where training
augments there (else bounded by what the workers need per batch), in the mode that training
would choose from cached timings."""

from __future__ import annotations

import pytest
import torch

from unetkit.config import Config, apply_values
from unetkit.plan import timing
from unetkit.runtime import compile as modes
from unetkit.train import builders


def _config(**values) -> Config:
    return apply_values(Config(), {
        "model.spatial_dims": 2, "model.in_channels": 1, "model.out_channels": 2,
        "model.base_width": 4, "model.depth": 2, "data.patch_size": [32, 32],
        "data.batch_size": 2, "train.device": "cpu", "train.precision": "fp32", **values})


@pytest.fixture
def augmenter_calls(monkeypatch):
    """How often the augmenter built for the timing loop runs; ``_augment_s`` answers 10 s."""
    calls = {"step": 0, "workers": 0}
    build = builders.build_augmenter

    def counting(config):
        augmenter = build(config)

        def call(image, mask, generator):
            calls["step"] += 1
            return augmenter(image, mask, generator)
        return call if augmenter is not None else None

    def ten_seconds(config, repeats):
        calls["workers"] += 1
        return 10.0

    monkeypatch.setattr(builders, "build_augmenter", counting)
    monkeypatch.setattr(timing, "_augment_s", ten_seconds)
    return calls


def test_a_step_without_workers_augments_its_batch(augmenter_calls):
    timed = timing.time_steps(_config(), steps=2, warmup=1)
    assert augmenter_calls == {"step": 3, "workers": 0}
    assert 0 < timed.step_s < 10.0


def test_with_workers_augmentation_leaves_the_step_and_bounds_it(augmenter_calls):
    timed = timing.time_steps(_config(**{"data.num_workers": 4}), steps=2, warmup=1)
    assert augmenter_calls == {"step": 0, "workers": 1}
    assert timed.step_s == 10.0 / 4  # four workers augment a batch each in 10 s


def test_without_augmentation_nothing_is_augmented(augmenter_calls):
    config = _config(**{"data.num_workers": 4, "data.augment.enabled": False})
    assert timing.time_steps(config, steps=2, warmup=1).step_s < 10.0 / 4
    assert augmenter_calls == {"step": 0, "workers": 0}


def _cache(config: Config, timings: dict[str, modes.Timing]) -> None:
    device = torch.device("cpu")
    plan = timing.training_precision(config, device)
    key = modes.step_key(device, builders.step_signature(config, plan.name, 1))
    modes.TimingCache().put(key, timings)


@pytest.mark.skipif(not modes.support(torch.device("cpu")).compiler,
                    reason="no C++ compiler: compile is no candidate on this CPU")
def test_a_cached_faster_mode_is_the_planned_step_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = _config()
    timed_loops = []
    median = timing._median_step
    monkeypatch.setattr(timing, "_median_step", lambda *a: timed_loops.append(1) or median(*a))
    _cache(config, {"eager": modes.Timing(0.5), "compile": modes.Timing(0.001, 0.0)})
    assert timing.time_steps(config).step_s == 0.001  # what the compiled step will cost
    assert timed_loops == []  # on a CPU nothing else to measure
    _cache(config, {"eager": modes.Timing(0.0005), "compile": modes.Timing(1.0, 0.0)})
    assert timing.time_steps(config, steps=1, warmup=1).step_s != 0.0005  # eager: measured
    assert timed_loops == [1]
