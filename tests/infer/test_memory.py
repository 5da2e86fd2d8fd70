"""The memory estimate behind infer.memory_budget_mb: its parts, its monotonicity, and a
measured peak (a fresh process's RSS high-water mark) that stays within 5% of the budget.

The peak is that of a prediction in a process that has run the network once on a small image,
as every image after the first of ``unetkit predict``: the first forward of a process pages in
the libraries' code and starts the thread pools (about 20 MB of RSS on a 2-core EPYC whatever
the image size), which is no memory of the prediction and no budget can bound."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

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
    assert tiled == bpv * math.prod(WINDOW) + slab + maps
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
    """Even tiles with a receptive-field margin recompute a few percent, not 25% overlaps."""
    bpv = tiling.forward_bytes_per_voxel(32, 4)
    for size, budget in (((4096, 4096), 2048), ((2048, 2048), 1024)):
        plan = plan_window(size, bytes_per_voxel=bpv, out_channels=2, budget_mb=budget,
                           multiple=16)
        computed = math.prod(w * t for w, t in zip(plan.window, plan.tiles, strict=True))
        assert not plan.whole and computed / math.prod(size) < 1.15


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_measured_peak_stays_within_the_budget(make_checkpoint, memory_peak) -> None:
    path = make_checkpoint(out_channels=2, base_width=16, depth=4)
    size, budget = 1536, 96.0
    bpv = tiling.forward_bytes_per_voxel(16, 4)
    plan = plan_window((size, size), bytes_per_voxel=bpv, out_channels=2, budget_mb=budget,
                       multiple=16)
    assert not plan.whole  # the budget forces tiles
    peak = memory_peak(size, budget, path)
    assert peak <= 1.05 * budget * 2**20, f"peak {peak / 2**20:.1f} MB > budget {budget} MB"
