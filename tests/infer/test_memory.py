"""The memory estimate behind infer.memory_budget_mb: its parts, its monotonicity, and a
measured peak that stays within 5% of the budget in fp32 and in bf16.

The peak is the RSS high-water mark of a prediction in a process that has predicted an image of
that size before, as every image after the first of ``unetkit predict`` on a folder of one size.
The first prediction of a process pays one-time costs that are no memory of the prediction and
that no budget can bound: the libraries' code is paged in, the thread pools start, and every
new window shape creates its convolution primitives, whose JIT-compiled kernels stay cached for
the process (oneDNN; how much depends on the instruction set: a fresh process's first
prediction peaked at up to 1.9x a 24 MB budget on an AVX512-BF16 EPYC: the ``first`` column of
``benchmarks/results/memory.json``). Between the two predictions
``malloc_trim`` gives the heap the first one freed back to the system, so that the high-water
mark counts every page the second one touches (without it, that prediction reuses pages left
resident and seems to need almost nothing). The ``memory_peak`` fixture (tests/conftest.py,
tests/infer/memory_probe.py) measures this way, for one model here and for an ensemble in
tests/infer/test_ensemble.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from unetkit.infer import tiling
from unetkit.infer.tiling import map_bytes_per_voxel, memory_estimate, plan_window

SIZE, WINDOW = (512, 384), (272, 208)


def test_estimate_counts_forward_accumulators_and_maps() -> None:
    bpv = tiling.forward_bytes_per_voxel(8, 4)
    whole = memory_estimate(SIZE, SIZE, bytes_per_voxel=bpv, out_channels=2, keep_scores=True)
    maps = map_bytes_per_voxel(1, 2, True) * math.prod(SIZE)
    assert whole == bpv * math.prod(SIZE) + maps  # one forward: no accumulators
    tiled = memory_estimate(SIZE, WINDOW, bytes_per_voxel=bpv, out_channels=2, keep_scores=True)
    slab = (2 * 2 + 1) * 4 * WINDOW[0] * SIZE[1]  # scores + weights + finished slab, C = 2
    cut = 4 * math.prod(WINDOW)  # the window's input, cut out of the padded image
    assert tiled == bpv * math.prod(WINDOW) + cut + slab + maps
    labels_only = memory_estimate(SIZE, WINDOW, bytes_per_voxel=bpv, out_channels=2,
                                  keep_scores=False)
    assert labels_only == tiled - (map_bytes_per_voxel(1, 2, True)
                                   - map_bytes_per_voxel(1, 2, False)) * math.prod(SIZE)
    # more channels in or out never cost less
    assert memory_estimate(SIZE, WINDOW, bytes_per_voxel=bpv, out_channels=3,
                           keep_scores=True, in_channels=2) > tiled


def test_estimate_grows_with_the_window_and_plans_shrink_with_the_budget() -> None:
    bpv = tiling.forward_bytes_per_voxel(32, 4)
    sizes = [(64 * k, 64 * k) for k in range(1, 9)]
    estimates = [memory_estimate((512, 512), w, bytes_per_voxel=bpv, out_channels=2,
                                 keep_scores=True) for w in sizes]
    assert estimates == sorted(estimates)
    previous = None
    for budget in (64, 128, 256, 512, 1024, 4096):
        plan = plan_window((2048, 2048), bytes_per_voxel=bpv, out_channels=2, budget_mb=budget,
                           multiple=16)
        tiles = math.prod(plan.tiles)
        assert plan.estimate_bytes <= budget * 2**20 or tiles == tiling.MAX_TILES_PER_AXIS ** 2
        if previous is not None:
            assert tiles <= previous  # a larger budget never needs more tiles
        previous = tiles


def test_tiles_recompute_little() -> None:
    """Even tiles with a receptive-field margin recompute a few percent (6.4% for both cases
    here: 4 x 4 and 3 x 3 tiles), not the 25% overlaps of sliding windows."""
    bpv = tiling.forward_bytes_per_voxel(32, 4)
    for size, budget in (((4096, 4096), 2048), ((2048, 2048), 1024)):
        plan = plan_window(size, bytes_per_voxel=bpv, out_channels=2, budget_mb=budget,
                           multiple=16)
        computed = math.prod(w * t for w, t in zip(plan.window, plan.tiles, strict=True))
        assert not plan.whole and computed / math.prod(size) < 1.07


def test_windows_per_forward_count() -> None:
    """``infer.batch_size`` windows run in one forward: their activations and inputs add up,
    so a larger batch plans more tiles under the same budget (one window per row caps it)."""
    bpv = tiling.forward_bytes_per_voxel(16, 4)
    one = memory_estimate(SIZE, WINDOW, bytes_per_voxel=bpv, out_channels=2, keep_scores=True)
    two = memory_estimate(SIZE, WINDOW, bytes_per_voxel=bpv, out_channels=2, keep_scores=True,
                          batch_size=2)
    assert two - one == math.prod(WINDOW) * (bpv + 4)  # activations + the window's input
    whole = memory_estimate(SIZE, SIZE, bytes_per_voxel=bpv, out_channels=2, keep_scores=True,
                            batch_size=4)
    assert whole == memory_estimate(SIZE, SIZE, bytes_per_voxel=bpv, out_channels=2,
                                    keep_scores=True)  # one window: nothing to batch
    plans = [plan_window((1536, 1536), bytes_per_voxel=bpv, out_channels=2, budget_mb=96,
                         multiple=16, batch_size=b) for b in (1, 2, 4)]
    assert math.prod(plans[0].tiles) < math.prod(plans[1].tiles) < math.prod(plans[2].tiles)
    assert all(p.estimate_bytes <= 96 * 2**20 for p in plans)


@pytest.mark.parametrize("name", ["unet", "resunet", "attention_unet", "unetplusplus"])
def test_the_forward_estimate_follows_the_model_and_the_precision(name) -> None:
    """Bytes per voxel = the model's factor x first width x bytes per activation: 4 in fp32, 2
    under bf16 autocast (the precision plan of the strategy)."""
    from unetkit.config import Config
    from unetkit.infer.strategy import Strategy
    from unetkit.runtime.device import PrecisionPlan

    config = Config.model_validate({"model": {"name": name, "base_width": 12}})
    factor = tiling.ACTIVATION_FACTORS[name]
    for dtype, itemsize in ((None, 4), (torch.bfloat16, 2)):
        strategy = Strategy(config, PrecisionPlan(dtype, False, True), 2)
        assert strategy.bytes_per_voxel() == factor * 12 * itemsize
    assert tiling.ACTIVATION_FACTORS["unetplusplus"] > tiling.ACTIVATION_FACTORS["unet"]


def onednn_runs_bf16() -> bool:
    """True when torch runs bf16 convolutions through oneDNN on this CPU (AVX512 BW/VL/DQ, the
    test of torch's ``mkldnn_bf16_device_check``); elsewhere (AVX2) it falls back to its own
    im2col convolutions, whose buffers the estimate does not count."""
    caps = torch.cpu.get_capabilities()
    return all(caps.get(f"avx512_{x}", False) for x in ("bw", "vl", "dq"))


def check_peak(memory_peak, checkpoint: Path, precision: str, batch_size: int,
               size: int = 1024, budget: float = 48.0) -> None:
    """Predict a ``size``^2 image twice in a fresh process (the ``memory_peak`` fixture) and
    check the second prediction's peak against ``budget`` MB (+5%)."""
    bpv = tiling.forward_bytes_per_voxel(16, 4 if precision == "fp32" else 2)
    plan = plan_window((size, size), bytes_per_voxel=bpv, out_channels=2, budget_mb=budget,
                       multiple=16, batch_size=batch_size)
    assert not plan.whole  # the budget forces tiles
    result = memory_peak(size, budget, checkpoint, precision=precision, batch_size=batch_size)
    assert result["precision"] == precision
    peak = result["peak"]
    assert peak <= 1.05 * budget * 2**20, (
        f"{precision}, {batch_size} window(s) per forward: peak {peak / 2**20:.1f} MB > "
        f"budget {budget} MB (tiles {plan.tiles})")


@pytest.mark.slow
def test_measured_peak_stays_within_the_budget(make_checkpoint, memory_peak, precision) -> None:
    if precision.name == "bf16" and not onednn_runs_bf16():
        pytest.skip("bf16 without AVX512 runs torch's fallback convolutions (docs/inference.md)")
    check_peak(memory_peak, make_checkpoint(out_channels=2, base_width=16, depth=4),
               precision.name, batch_size=1)


@pytest.mark.slow
def test_two_windows_per_forward_stay_within_the_budget(make_checkpoint, memory_peak) -> None:
    """``infer.batch_size: 2``: the plan counts both windows of a forward (before, the forward
    ran twice the windows the plan had counted). In fp32: what the batch adds does not depend
    on the precision, which the test above covers."""
    check_peak(memory_peak, make_checkpoint(out_channels=2, base_width=16, depth=4), "fp32",
               batch_size=2)
