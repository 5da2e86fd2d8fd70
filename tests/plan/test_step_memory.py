"""The memory a planned training step needs, estimated without a GPU, and the step timing."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.config import Config, apply_values
from unetkit.plan import memory, timing
from unetkit.runtime.checkpoint import build_model_from_config


def _config(batch: int = 2, base: int = 8, dims: int = 3) -> Config:
    patch = [16, 24, 16] if dims == 3 else [32, 48]
    return apply_values(Config(), {
        "model.spatial_dims": dims, "model.in_channels": 1, "model.out_channels": 3,
        "model.widths": [base * 2**i for i in range(3)], "model.depth": 2,
        "model.norm": "instance", "model.deep_supervision": True,
        "data.patch_size": patch, "data.batch_size": batch, "train.device": "cpu",
        "train.precision": "fp32"})


def test_the_estimate_is_the_optimizer_state_plus_a_share_per_sample():
    one, two, three = (memory.training_memory(_config(batch)) for batch in (1, 2, 3))
    assert three - two == two - one > 0  # every activation scales with the batch
    weights = sum(p.numel() for p in build_model_from_config(_config()).parameters())
    # what a step holds whatever the batch: fp32 weights, gradients and AdamW's two moments
    assert 2 * one - two == memory.FLOAT_BYTES * memory.STATE_COPIES * weights
    per_sample = two - one
    voxels = 16 * 24 * 16
    # at least the two convolutions' outputs of the first stage (8 channels each) are saved
    assert per_sample > memory.FLOAT_BYTES * 2 * 8 * voxels


def test_wider_networks_and_larger_patches_need_more():
    assert memory.training_memory(_config(base=16)) > 1.8 * memory.training_memory(_config())
    small, large = _config(dims=2), apply_values(_config(dims=2), {"data.patch_size": [64, 96]})
    activations = [memory.training_memory(c) - memory.training_memory(apply_values(
        c, {"data.batch_size": 1})) for c in (small, large)]
    assert activations[1] == pytest.approx(4 * activations[0], rel=0.01)  # 4x the voxels


def test_no_memory_bound_is_planned_off_cuda():
    assert memory.memory_bound(torch.device("cpu")) is None


def test_a_cpu_timing_is_a_real_step_without_a_peak():
    timed = timing.time_steps(_config(dims=2), steps=1, warmup=1)
    assert 0 < timed.step_s < math.inf and timed.peak_bytes is None
    assert not timed.out_of_memory
