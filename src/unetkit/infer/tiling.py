"""How to cut an input into windows under a memory budget: even, near-cubic tiles.

A forward pass over ``n`` voxels holds about ``n * bytes_per_voxel`` of activations (per window:
``infer.batch_size`` windows run at once, each with its input cut out of the image); the blended
outputs add accumulators (a slab of ``C x window[0] x rest`` floats and its weights) and the
result (``C`` floats per voxel when the class scores are kept, one byte per voxel otherwise).
``plan_window`` counts all of it: the whole (padded) image in one forward when it fits, else the
tile count per axis first (the fewest tiles that fit) and then even tiles of near-cubic shape that
share a fixed margin with their neighbours. Halving the longest axis instead gives elongated
tiles that recompute the image 1.9x (4096^2) to 2.25x (256^3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Memory of a forward per input voxel, in units of the first stage's width times the bytes of an
# activation (4 in fp32, 2 under bf16/fp16 autocast), per model: the live activations (for the
# U-Net: skip, upsampled, concatenation (2x) and two convolution outputs at full resolution, the
# coarser stages), what the convolution library allocates inside each call, and the heap the
# allocator cannot reuse between them. The resident memory (RSS) one forward adds, measured in a
# process that had run that window before and had trimmed its heap (glibc ``malloc_trim``):
# ``benchmarks/bench_memory.py``, ``benchmarks/results/memory.json``, 320^2 windows, fp32 and
# bf16: UNets of widths 4-32 8.1-10.6 units, ResUNet 11.1-14.0, Attention U-Net 11.2-13.5 (at
# width 16; bf16 costs them more units than fp32), UNet++ 19.1-20.2 (every node of its nested
# decoder stays at full resolution). 8 units, the earlier U-Net figure, counted only the
# tensors alive between operations, and peaks measured this way passed the budget.
ACTIVATION_FACTORS = {"unet": 11, "resunet": 14, "attention_unet": 14, "unetplusplus": 22}
MAX_TILES_PER_AXIS = 64
#: voxels neighbouring tiles share at least (and two multiples of the axis at least)
MIN_MARGIN = 32


@dataclass(frozen=True)
class WindowPlan:
    """Window size and overlap fraction per axis for ``blended_slabs``; ``tiles`` per axis."""

    window: tuple[int, ...]
    overlap: tuple[float, ...]
    tiles: tuple[int, ...]
    estimate_bytes: int
    shared: tuple[int, ...] = ()  # voxels neighbouring tiles share per axis (0: one tile)

    @property
    def whole(self) -> bool:
        """True when one forward covers the input."""
        return all(t == 1 for t in self.tiles)


def forward_bytes_per_voxel(first_width: int, itemsize: int, model: str = "unet") -> int:
    """Estimated peak memory of one forward of ``model`` (a ``model.name``), per input voxel
    (bytes); ``itemsize``: bytes per activation (4 fp32, 2 under bf16/fp16 autocast)."""
    factor = ACTIVATION_FACTORS.get(model, max(ACTIVATION_FACTORS.values()))
    return factor * first_width * itemsize


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def round_up_sizes(sizes: Sequence[int], multiples: Sequence[int]) -> list[int]:
    """Every size rounded up to a multiple of its axis' entry of ``multiples``."""
    return [math.ceil(int(n) / m) * m for n, m in zip(sizes, multiples, strict=True)]


def tile_size(length: int, tiles: int, margin: int, multiple: int) -> int:
    """Even tile length covering ``length`` with ``tiles`` tiles that share ``margin`` voxels
    (at most half a tile's share of the axis)."""
    if tiles <= 1:
        return _round_up(length, multiple)
    share = math.ceil(length / tiles)
    margin = min(margin, share // 2)
    return min(_round_up((length + (tiles - 1) * margin) / tiles, multiple),
               _round_up(length, multiple))


def map_bytes_per_voxel(in_channels: int, out_channels: int, keep_scores: bool) -> int:
    """Bytes per input voxel of the whole-input maps held while the windows run.

    The normalised input and its zero-padded copy (``C_in`` floats each), and either the class
    scores (``C_out`` floats, written slab by slab; the decision afterwards needs less: the
    scores, a float margin and two byte maps) or, when only labels are kept, a label byte.
    """
    result = out_channels * 4 if keep_scores else 1
    return 2 * in_channels * 4 + result


def memory_estimate(size: Sequence[int], window: Sequence[int], *, bytes_per_voxel: int,
                    out_channels: int, keep_scores: bool, in_channels: int = 1,
                    batch_size: int = 1) -> int:
    """Bytes of one prediction: forward + slab accumulators + whole-input maps.

    Tiles run ``batch_size`` windows per forward (``infer.batch_size``; at most the windows of
    one row, ``blended_slabs``' groups), each with its input cut out of the padded image (C_in
    floats per voxel); one window over the whole input is the padded image itself.
    """
    voxels, window_voxels = math.prod(size), math.prod(window)
    whole = tuple(window) == tuple(size)
    batch = 1 if whole else max(1, batch_size)
    # accumulators of C_out floats and their weights over one window's rows, the finished slab
    slab = 0 if whole else (2 * out_channels + 1) * 4 * window[0] * math.prod(size[1:])
    cut = 0 if whole else in_channels * 4
    maps = map_bytes_per_voxel(in_channels, out_channels, keep_scores) * voxels
    return batch * window_voxels * (bytes_per_voxel + cut) + slab + maps


def _per_axis(multiple: int | Sequence[int], dims: int) -> tuple[int, ...]:
    multiples = (multiple,) * dims if isinstance(multiple, int) else tuple(multiple)
    if len(multiples) != dims or any(int(m) < 1 for m in multiples):
        raise ValueError(f"plan_window: multiple must be a positive int or {dims} of them (one "
                         f"per axis), got {multiple!r}")
    return tuple(int(m) for m in multiples)


def plan_window(size: Sequence[int], *, bytes_per_voxel: int, out_channels: int,
                budget_mb: float, multiple: int | Sequence[int], margin: int | None = None,
                keep_scores: bool = True, in_channels: int = 1, batch_size: int = 1
                ) -> WindowPlan:
    """The whole ``size`` when it fits ``budget_mb``, else the fewest even tiles that fit.

    Args:
        size: spatial size of the (padded) input; every axis a multiple of its ``multiple``.
        bytes_per_voxel: forward activation bytes per voxel (``forward_bytes_per_voxel``).
        out_channels: channels of the network output.
        budget_mb: memory allowed for the whole prediction.
        multiple: every tile axis is a multiple of this: one int for all axes (``2**depth``) or
            one per axis (``unetkit.nn.sizes.axis_multiples`` for anisotropic strides).
        margin: voxels neighbouring tiles share (default per axis: two multiples, at least 32).
        keep_scores: the float class scores of the whole input are kept (else only labels).
        in_channels: channels of the network input.
        batch_size: windows per forward (``infer.batch_size``).

    Returns:
        A ``WindowPlan``; when even the smallest tiles exceed the budget, those.
    """
    size = tuple(int(s) for s in size)
    budget = budget_mb * 2**20
    multiples = _per_axis(multiple, len(size))
    margins = tuple(margin if margin is not None else max(2 * m, MIN_MARGIN)
                    for m in multiples)

    tiles = [1] * len(size)
    while True:
        window = tuple(tile_size(n, t, g, m)
                       for n, t, g, m in zip(size, tiles, margins, multiples, strict=True))
        cost = memory_estimate(size, window, bytes_per_voxel=bytes_per_voxel,
                               out_channels=out_channels, keep_scores=keep_scores,
                               in_channels=in_channels,
                               batch_size=min(batch_size, math.prod(tiles[1:])))
        growable = [a for a, (n, t, m) in enumerate(zip(size, tiles, multiples, strict=True))
                    if math.ceil(n / t) > m and t < MAX_TILES_PER_AXIS]
        if cost <= budget or not growable:
            break
        # split the axis whose tiles are longest: tiles stay near-cubic
        axis = max(growable, key=lambda a: (window[a], size[a]))
        tiles[axis] += 1
    overlap = tuple(tile_overlap(n, w, t) for n, w, t in zip(size, window, tiles, strict=True))
    shared = tuple(0 if t <= 1 else w - math.ceil((n - w) / (t - 1))
                   for n, w, t in zip(size, window, tiles, strict=True))
    return WindowPlan(window, overlap, tuple(tiles), cost, shared)


def tile_overlap(length: int, window: int, tiles: int) -> float:
    """The overlap fraction that makes ``window_starts`` place exactly ``tiles`` windows."""
    if tiles <= 1 or window >= length:
        return 0.0
    step = math.ceil((length - window) / (tiles - 1))
    return 1.0 - step / window
