"""Sliding-window inference over N-D inputs: window grid, Gaussian weights, stitching.

Small pure functions on tensors; no files and no models (``network`` is any callable mapping a
window batch ``(n, C_in, *window)`` to ``(n, C_out, *window)``).

Outputs are blended with an importance map (a Gaussian with sigma = 1/8 of the window, floored at
1e-3 so that the corners of the image are never divided by ~0) and normalised by the summed map,
so a network with constant output gives exactly that constant. A window that covers the whole
(padded) input takes a shortcut: one forward, no weights, no accumulator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Network = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]

_ACCUMULATORS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``[0, size)`` along one axis.

    Windows advance by ``int(window * (1 - overlap))`` (at least 1); the last one is shifted back
    to end exactly at ``size``. ``size <= window`` gives the single start 0.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= window:
        return [0]
    step = max(int(window * (1 - overlap)), 1)
    count = math.ceil((size - window) / step) + 1
    return [min(i * step, size - window) for i in range(count)]


def window_slices(
    spatial_size: Sequence[int], window: Sequence[int], overlap: float
) -> list[tuple[slice, ...]]:
    """All windows (as slice tuples over the spatial axes) covering ``spatial_size``."""
    if len(spatial_size) != len(window):
        raise ValueError(f"window {tuple(window)} has {len(window)} axes, input has "
                         f"{len(spatial_size)} spatial axes")
    per_axis = [window_starts(s, w, overlap) for s, w in zip(spatial_size, window, strict=True)]
    return [tuple(slice(o, o + w) for o, w in zip(origin, window, strict=True))
            for origin in itertools.product(*per_axis)]


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


def pad_to_size(
    x: torch.Tensor, size: Sequence[int], mode: str = "constant"
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes of ``x`` (B, C, *spatial) symmetrically up to at least ``size``.

    Returns:
        The padded tensor and the slices (over the spatial axes) that crop it back.
    """
    spatial = x.shape[2:]
    before = [max(s - n, 0) // 2 for n, s in zip(spatial, size, strict=True)]
    after = [max(s - n, 0) - b for n, s, b in zip(spatial, size, before, strict=True)]
    crop = tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))
    if not any(before) and not any(after):
        return x, crop
    pads: list[int] = []
    for b, a in zip(reversed(before), reversed(after), strict=True):
        pads += [b, a]
    if mode == "constant":
        return F.pad(x, pads), crop
    return F.pad(x, pads, mode=mode), crop


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


def _run(network: Network, batch: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    out = network(batch)
    if isinstance(out, (list, tuple)):  # deep supervision: full resolution first
        out = out[0]
    if tuple(out.shape[2:]) != tuple(window) or out.shape[0] != batch.shape[0]:
        raise ValueError(
            f"network output {tuple(out.shape)} does not match window {tuple(window)}; "
            "sliding windows need 'same' networks (use overlap_tile_inference for 'valid' ones)"
        )
    return out


def _prepare(
    x: torch.Tensor, window: Sequence[int] | None, pad_mode: str
) -> tuple[torch.Tensor, tuple[int, ...], tuple[slice, ...]]:
    if x.dim() < 3:
        raise ValueError(f"input must be (B, C, *spatial), got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[2:])
    window = spatial if window is None else tuple(int(w) for w in window)
    if len(window) != len(spatial) or any(w < 1 for w in window):
        raise ValueError(f"window {window} does not fit input with spatial shape {spatial}")
    padded, crop = pad_to_size(x, window, pad_mode)
    return padded, window, crop


def _batches(slices: list[tuple[slice, ...]], batch_size: int) -> list[list[tuple[slice, ...]]]:
    return [slices[i:i + batch_size] for i in range(0, len(slices), batch_size)]


def sliding_window_inference(
    x: torch.Tensor,
    network: Network,
    window: Sequence[int] | None,
    overlap: float = 0.25,
    *,
    gaussian: bool = True,
    batch_size: int = 1,
    accumulate: str = "float32",
    pad_mode: str = "constant",
    progress: Progress | None = None,
) -> torch.Tensor:
    """Blend ``network`` outputs over overlapping windows into one map of the input's size.

    Args:
        x: input ``(B, C_in, *spatial)``; spatial axes smaller than the window are padded
            symmetrically (``pad_mode`` as in ``torch.nn.functional.pad``) and cropped back.
        network: maps ``(n, C_in, *window)`` to ``(n, C_out, *window)`` (raw outputs, e.g.
            logits; a list from deep supervision uses its first element).
        window: window size per spatial axis; ``None`` = one window over the whole input.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        gaussian: weight window outputs by ``gaussian_importance`` (else uniformly).
        batch_size: windows per network call.
        accumulate: accumulator dtype, ``"float32"`` or half (``"float16"``/``"bfloat16"``) to
            halve the memory of large volumes.
        progress: called as ``progress(done_windows, total_windows)``.

    Returns:
        ``(B, C_out, *spatial)`` float32 blended outputs.
    """
    if accumulate not in _ACCUMULATORS:
        raise ValueError(f"accumulate must be one of {sorted(_ACCUMULATORS)}, got {accumulate!r}")
    padded, window, crop = _prepare(x, window, pad_mode)
    spatial = tuple(padded.shape[2:])
    slices = window_slices(spatial, window, overlap)
    if len(slices) == 1:  # one window: no blending needed
        out = _run(network, padded, window).float()
        if progress:
            progress(1, 1)
        return out[(slice(None), slice(None), *crop)]
    acc_dtype = _ACCUMULATORS[accumulate]
    weight = (gaussian_importance(window, device=x.device) if gaussian
              else torch.ones(window, device=x.device))
    norm = torch.zeros(spatial, dtype=torch.float32, device=x.device)
    for sl in slices:
        norm[sl] += weight
    results = []
    done = 0
    total = len(slices) * x.shape[0]
    for b in range(x.shape[0]):
        acc = None
        for group in _batches(slices, batch_size):
            batch = torch.cat([padded[(slice(b, b + 1), slice(None), *sl)] for sl in group])
            out = _run(network, batch, window).float() * weight
            if acc is None:
                acc = torch.zeros((out.shape[1], *spatial), dtype=acc_dtype, device=x.device)
            for k, sl in enumerate(group):
                acc[(slice(None), *sl)] += out[k].to(acc_dtype)
            done += len(group)
            if progress:
                progress(done, total)
        results.append(acc[(slice(None), *crop)].float() / norm[crop])
    return torch.stack(results)
