"""Importance maps: how much each voxel of a window's output counts when windows are blended.

``gaussian_importance`` favours the window centre (MONAI's and nnU-Net's choice for windows that
overlap by a fixed fraction); ``ramp_importance`` is 1 inside and falls off linearly towards the
edges over a given number of voxels, so two tiles sharing a margin of that width crossfade across
it and each voxel is dominated by the tile in which it has more context.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["gaussian_importance", "ramp_importance"]


def gaussian_importance(
    window: Sequence[int],
    sigma_scale: float = 0.125,
    floor: float = 1e-3,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Separable Gaussian importance map of shape ``window`` (float32).

    Each axis is ``exp(-d**2 / (2 sigma**2))`` with ``d`` the distance from the window centre
    ``(n - 1) / 2`` and ``sigma = sigma_scale * n``; values below ``floor`` are raised to it.
    """
    weights = torch.ones((), dtype=torch.float32, device=device)
    for n in window:
        d = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
        axis = torch.exp(-(d**2) / (2.0 * (sigma_scale * n) ** 2))
        weights = weights.unsqueeze(-1) * axis
    return weights.clamp_min(floor)


def ramp_importance(window: Sequence[int], ramp: Sequence[int], floor: float = 1e-3,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Weights that rise linearly over ``ramp`` voxels from each edge of the window (per axis),
    1 inside: two tiles that share a margin of ``ramp`` voxels crossfade across it, so every
    voxel is dominated by the tile in which it lies deeper (where the network saw more context).

    Per axis ``clamp((d + 0.5) / ramp, floor, 1)`` with ``d`` the distance to the nearer edge;
    across a shared margin of exactly ``ramp`` voxels the two weights sum to 1.
    """
    if len(ramp) != len(window):
        raise ValueError(f"ramp {tuple(ramp)} needs one value per window axis {tuple(window)}")
    weights = torch.ones((), dtype=torch.float32, device=device)
    for n, r in zip(window, ramp, strict=True):
        index = torch.arange(n, dtype=torch.float32, device=device)
        distance = torch.minimum(index, n - 1 - index)
        axis = ((distance + 0.5) / max(int(r), 1)).clamp(floor, 1.0)
        weights = weights.unsqueeze(-1) * axis
    return weights
