"""Test-time augmentation by mirroring: the network averaged over flips of its input."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from unetkit.runtime.network import Network


def mirror_tta(network: Network, axes: Sequence[int]) -> Network:
    """Test-time augmentation: average ``network`` over all mirrorings of the given spatial axes.

    Args:
        network: maps ``(n, C_in, *spatial)`` to ``(n, C_out, *spatial)``.
        axes: spatial axes (0 = first spatial axis) to mirror; ``2 ** len(axes)`` forwards.
    """
    axes = sorted(set(int(a) for a in axes))
    if not axes:
        return network
    combos = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]

    def averaged(x: torch.Tensor) -> torch.Tensor:
        if max(axes) >= x.dim() - 2:
            raise ValueError(f"tta axes {axes} out of range for {x.dim() - 2} spatial axes")
        total = None
        for combo in combos:
            dims = [a + 2 for a in combo]
            flipped = x.flip(dims) if dims else x
            out = network(flipped).float()
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total / len(combos)

    return averaged
