"""Padding of the spatial axes of ``(B, C, *spatial)`` tensors; the one padding routine of unetkit.

Pure tensor code that knows nothing of networks: ``unetkit.nn.sizes.pad_to_valid`` (padding to a
size a model accepts) and the inference windows build on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SPATIAL_PAD_MODES = ("mirror", "replicate", "constant")


def pad_spatial(x: torch.Tensor, before: Sequence[int], after: Sequence[int],
                mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of ``x`` ``(B, C, *spatial)``; the one padding routine of unetkit.

    Modes: ``'mirror'`` reflects without repeating the border voxel (numpy's ``'reflect'``) for
    any pad length (a pad longer than the axis keeps reflecting back and forth), ``'replicate'``
    repeats the border voxel, ``'constant'`` fills with ``value``.

    Returns:
        ``(B, C, *(spatial + before + after))``; ``x`` itself when nothing is padded.
    """
    if mode not in SPATIAL_PAD_MODES:
        raise ValueError(f"pad_spatial: mode must be one of {SPATIAL_PAD_MODES}, got {mode!r}")
    before, after = [int(b) for b in before], [int(a) for a in after]
    if len(before) != x.dim() - 2 or len(after) != x.dim() - 2:
        raise ValueError(f"pad_spatial: {len(before)}/{len(after)} pads for {x.dim() - 2} "
                         "spatial axes")
    if not any(before) and not any(after):
        return x
    if mode != "mirror":
        flat = [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
        if mode == "constant":
            return F.pad(x, flat, mode="constant", value=value)
        return F.pad(x, flat, mode="replicate")
    for axis, (b, a) in enumerate(zip(before, after, strict=True)):
        n = x.shape[axis + 2]
        if b == 0 and a == 0:
            continue
        index = torch.arange(-b, n + a, device=x.device)
        if n == 1:
            index = torch.zeros_like(index)
        else:
            period = 2 * (n - 1)
            index = index.remainder(period)
            index = torch.where(index >= n, period - index, index)
        x = x.index_select(axis + 2, index)
    return x
