"""The planner on a CUDA device (marker ``gpu``; ``benchmarks/gpu_check.py`` runs them): the
timing measures each candidate's peak memory, the estimate is of the same order, and a plan
grown for the GPU keeps every chosen step within the memory bound. Skips without CUDA;
``tests/plan/test_gpu_growth.py`` covers the growth rule with faked timings on any machine."""

from __future__ import annotations

import pytest
import torch

from unetkit.config import Config, apply_values

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(GPUS == 0, reason="no CUDA device: GPU checks skipped")]


def test_a_cuda_timing_measures_the_peak_the_estimate_foresees():
    from unetkit.plan import memory, timing

    config = apply_values(Config(), {
        "model.spatial_dims": 3, "model.in_channels": 1, "model.out_channels": 3,
        "model.widths": [32, 64, 128, 256], "model.depth": 3, "model.norm": "instance",
        "model.deep_supervision": True, "data.patch_size": [40, 56, 40],
        "data.batch_size": 4, "train.device": "cuda"})  # the hippocampus 3D plan
    timed = timing.time_steps(config)
    assert timed.peak_bytes is not None and timed.peak_bytes > 0 and not timed.out_of_memory
    estimate = memory.training_memory(config)
    assert 0.25 * estimate <= timed.peak_bytes <= 1.5 * estimate, (timed.peak_bytes, estimate)


def test_a_plan_on_the_gpu_keeps_its_step_within_the_memory_bound(tmp_path):
    from unetkit.data.synthetic import write_blobs_dataset
    from unetkit.plan import memory, planner

    data = write_blobs_dataset(tmp_path / "Dataset004", 4, (35, 50, 35))
    bound = memory.memory_bound(torch.device("cuda"))
    plan = planner.make_plan(data, "3m", device="cuda")
    chosen = next(c for c in plan.candidates if c.chosen)
    assert all(c.memory_measured for c in plan.candidates if c.step_s < float("inf"))
    assert chosen.memory_bytes <= bound
    assert plan.config.model.base_width == plan.config.model.widths[0]
