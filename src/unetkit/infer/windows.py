"""Sliding windows over N-D inputs: positions, Gaussian weights and the one blending loop.

Small pure functions on tensors; no files and no models (``network`` is any callable mapping a
window batch ``(n, C_in, *window)`` to ``(n, C_out, *window)``).

Outputs are blended with an importance map (``unetkit.infer.importance``: a Gaussian with sigma =
1/8 of the window, floored at 1e-3 so that the corners of the image are never divided by ~0; or,
for tiles that share a margin, a linear crossfade across it) and normalised by the summed map,
so a network with constant output gives exactly that constant. A window that covers the whole
(padded) input takes a shortcut: one forward, no weights, no accumulator.

``blended_slabs`` is the only loop: windows are processed in rows along the first spatial axis,
and the accumulator spans one window's extent along that axis; once every window touching a slab
of rows has been added, the slab is final and handed out. The two front-ends differ only in what
they keep of each slab: ``sliding_window_inference`` the blended outputs (the whole map),
``sliding_window_labels`` the decided labels (memory ``C x window[0] x rest`` plus a label map).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from unetkit.infer import decision
from unetkit.infer.importance import gaussian_importance, ramp_importance
from unetkit.nn.sizes import pad_spatial
from unetkit.runtime.network import Network

Progress = Callable[[int, int], None]
Decide = Callable[[torch.Tensor], torch.Tensor]

ACCUMULATORS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``[0, size)`` along one axis.

    Windows advance by ``int(window * (1 - overlap))`` (at least 1); the last one is shifted back
    to end exactly at ``size``. ``size <= window`` gives the single start 0.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= window:
        return [0]
    step = max(int(window * (1 - overlap) + 1e-9), 1)
    count = math.ceil((size - window) / step) + 1
    return [min(i * step, size - window) for i in range(count)]


def per_axis(overlap: float | Sequence[float], axes: int) -> tuple[float, ...]:
    """One overlap fraction per spatial axis (a single value is repeated)."""
    if isinstance(overlap, (int, float)):
        return (float(overlap),) * axes
    values = tuple(float(o) for o in overlap)
    if len(values) != axes:
        raise ValueError(f"overlap {values} needs one value per spatial axis ({axes})")
    return values


def window_slices(
    spatial_size: Sequence[int], window: Sequence[int], overlap: float | Sequence[float]
) -> list[tuple[slice, ...]]:
    """All windows (as slice tuples over the spatial axes) covering ``spatial_size``."""
    if len(spatial_size) != len(window):
        raise ValueError(f"window {tuple(window)} has {len(window)} axes, input has "
                         f"{len(spatial_size)} spatial axes")
    overlaps = per_axis(overlap, len(window))
    per_axis_starts = [window_starts(s, w, o)
                       for s, w, o in zip(spatial_size, window, overlaps, strict=True)]
    return [tuple(slice(o, o + w) for o, w in zip(origin, window, strict=True))
            for origin in itertools.product(*per_axis_starts)]


def symmetric_pads(spatial: Sequence[int], size: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(before, after)`` pads that bring ``spatial`` up to at least ``size``, centred."""
    before = [max(s - n, 0) // 2 for n, s in zip(spatial, size, strict=True)]
    after = [max(s - n, 0) - b for n, s, b in zip(spatial, size, before, strict=True)]
    return before, after


def _run(network: Network, batch: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    out = network(batch)
    if isinstance(out, (list, tuple)):  # deep supervision: full resolution first
        out = out[0]
    if tuple(out.shape[2:]) != tuple(window) or out.shape[0] != batch.shape[0]:
        raise ValueError(
            f"network output {tuple(out.shape)} does not match window {tuple(window)}; "
            "sliding windows need 'same' networks (use overlap_tile_inference for 'valid' ones)"
        )
    # back where the windows were cut: the accumulators live on the input's device, which need
    # not be the network's (unetkit.infer.placement: accumulators on the CPU, network on a GPU)
    return out.float().to(batch.device)


def _shift(buffer: torch.Tensor, rows: int, axis: int) -> None:
    """Move ``buffer`` by ``rows`` towards the start of ``axis`` in place, zero-filling the end."""
    length = buffer.shape[axis]
    if rows >= length:
        buffer.zero_()
        return
    # chunks of at most ``rows``, front to back: a chunk's source never overlaps its destination
    # and is read before it is overwritten, so no copy of the buffer is needed
    for begin in range(0, length - rows, rows):
        count = min(rows, length - rows - begin)
        buffer.narrow(axis, begin, count).copy_(buffer.narrow(axis, begin + rows, count))
    buffer.narrow(axis, length - rows, rows).zero_()


def blended_slabs(
    x: torch.Tensor,
    network: Network,
    window: Sequence[int],
    overlap: float | Sequence[float] = 0.25,
    *,
    gaussian: bool = True,
    batch_size: int = 1,
    accumulate: str = "float32",
    progress: Progress | None = None,
    ramp: Sequence[int] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Blend ``network`` over windows of ``x`` and yield finished slabs along the first axis.

    Args:
        x: input ``(B, C_in, *spatial)``, every axis at least as long as the window.
        network: maps ``(n, C_in, *window)`` to raw outputs ``(n, C_out, *window)``.
        window: window size per spatial axis.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)`` (one value, or
            one per spatial axis).
        gaussian: weight window outputs by ``gaussian_importance`` (else uniformly).
        batch_size: windows per network call.
        accumulate: accumulator dtype; half precision halves the accumulator's memory.
        progress: called as ``progress(done, total)``, counting windows times samples.
        ramp: voxels per axis over which the weights rise from each window edge
            (``ramp_importance``: tiles sharing that margin crossfade); replaces ``gaussian``.

    Yields:
        ``(row, blended)``: rows ``[row, row + blended.shape[2])`` of the normalised blended
        outputs ``(B, C_out, rows, *spatial[1:])`` float32, in increasing order, covering
        ``x`` exactly once.
    """
    if accumulate not in ACCUMULATORS:
        raise ValueError(f"accumulate must be one of {sorted(ACCUMULATORS)}, got {accumulate!r}")
    spatial, window = tuple(x.shape[2:]), tuple(int(w) for w in window)
    if len(window) != len(spatial) or any(w < 1 or w > s for w, s in zip(window, spatial,
                                                                         strict=True)):
        raise ValueError(f"window {window} does not fit input with spatial shape {spatial}")
    if window == spatial:  # one window: no blending needed
        out = _run(network, x, window)
        if progress:
            progress(1, 1)
        yield 0, out
        return
    overlaps = per_axis(overlap, len(window))
    rows = window_starts(spatial[0], window[0], overlaps[0])
    rest = window_slices(spatial[1:], window[1:], overlaps[1:])
    if ramp is not None:
        weight = ramp_importance(window, ramp, device=x.device)
    elif gaussian:
        weight = gaussian_importance(window, device=x.device)
    else:
        weight = torch.ones(window, device=x.device)
    acc = torch.zeros((x.shape[0], 0), device=x.device)  # sized at the first output
    norm = torch.zeros((window[0], *spatial[1:]), dtype=torch.float32, device=x.device)
    total, done, base = len(rows) * len(rest) * x.shape[0], 0, 0
    for start in rows + [spatial[0]]:
        if start > base:  # rows [base, start) will receive no more windows
            final = min(start - base, window[0])
            yield base, acc[:, :, :final].float() / norm[:final]
            _shift(acc, start - base, 2)
            _shift(norm, start - base, 0)
            base = start
        if start >= spatial[0]:
            break
        boxes = [(slice(start, start + window[0]), *r) for r in rest]
        for index in range(0, len(boxes), batch_size):
            group = boxes[index:index + batch_size]
            batch = torch.cat([x[(slice(None), slice(None), *box)] for box in group])
            out = _run(network, batch, window) * weight
            if acc.dim() == 2:
                acc = torch.zeros((x.shape[0], out.shape[1], window[0], *spatial[1:]),
                                  dtype=ACCUMULATORS[accumulate], device=x.device)
            for k, box in enumerate(group):
                local = (slice(0, window[0]), *box[1:])
                acc[(slice(None), slice(None), *local)] += \
                    out[k * x.shape[0]:(k + 1) * x.shape[0]].to(acc.dtype)
                norm[local] += weight
            done += len(group) * x.shape[0]
            if progress:
                progress(done, total)


def _padded(x: torch.Tensor, window: Sequence[int] | None, pad_mode: str
            ) -> tuple[torch.Tensor, tuple[int, ...], tuple[slice, ...]]:
    """``x`` padded up to the window where it is smaller; the window; the crop back."""
    if x.dim() < 3:
        raise ValueError(f"input must be (B, C, *spatial), got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[2:])
    window = spatial if window is None else tuple(int(w) for w in window)
    if len(window) != len(spatial) or any(w < 1 for w in window):
        raise ValueError(f"window {window} does not fit input with spatial shape {spatial}")
    before, after = symmetric_pads(spatial, window)
    crop = tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))
    return pad_spatial(x, before, after, pad_mode), window, crop


def sliding_window_inference(
    x: torch.Tensor,
    network: Network,
    window: Sequence[int] | None,
    overlap: float | Sequence[float] = 0.25,
    *,
    gaussian: bool = True,
    batch_size: int = 1,
    accumulate: str = "float32",
    pad_mode: str = "constant",
    progress: Progress | None = None,
    ramp: Sequence[int] | None = None,
) -> torch.Tensor:
    """Blend ``network`` outputs over overlapping windows into one map of the input's size.

    Args:
        x: input ``(B, C_in, *spatial)``; spatial axes smaller than the window are padded
            symmetrically (``pad_mode``: constant, mirror or replicate) and cropped back.
        network: maps ``(n, C_in, *window)`` to ``(n, C_out, *window)`` raw outputs.
        window: window size per spatial axis; ``None`` = one window over the whole input.
        overlap, gaussian, batch_size, accumulate, progress, ramp: as in ``blended_slabs``.

    Returns:
        ``(B, C_out, *spatial)`` float32 blended outputs.
    """
    padded, window, crop = _padded(x, window, pad_mode)
    out = None  # written slab by slab: no second copy of the map (as a torch.cat would need)
    for row, slab in blended_slabs(padded, network, window, overlap, gaussian=gaussian,
                                   batch_size=batch_size, accumulate=accumulate,
                                   progress=progress, ramp=ramp):
        if row == 0 and slab.shape[2] == padded.shape[2]:
            out = slab
            break
        if out is None:
            out = slab.new_empty((*slab.shape[:2], *padded.shape[2:]))
        out[:, :, row:row + slab.shape[2]] = slab
        del slab  # not alive while the generator shifts its accumulators
    assert out is not None
    return out[(slice(None), slice(None), *crop)]


def sliding_window_labels(
    x: torch.Tensor,
    network: Network,
    window: Sequence[int] | None,
    overlap: float | Sequence[float] = 0.25,
    *,
    decide: Decide = decision.decide,
    gaussian: bool = True,
    batch_size: int = 1,
    accumulate: str = "float32",
    pad_mode: str = "constant",
    progress: Progress | None = None,
    ramp: Sequence[int] | None = None,
) -> torch.Tensor:
    """``decide`` applied to ``sliding_window_inference``'s output, in bounded memory.

    Args:
        x: input ``(B, C_in, *spatial)``.
        network: maps ``(n, C_in, *window)`` to raw outputs ``(n, C_out, *window)``.
        window: window size per spatial axis (None: the whole input).
        decide: blended outputs ``(C_out, *S)`` -> labels ``(*S)`` (default: the more probable
            class, ``unetkit.infer.decision.decide``).
        overlap, gaussian, batch_size, accumulate, pad_mode, progress, ramp: as in
            ``sliding_window_inference``.

    Returns:
        Labels ``(B, *spatial)`` in ``decide``'s dtype.
    """
    padded, window, crop = _padded(x, window, pad_mode)
    labels = None
    for row, slab in blended_slabs(padded, network, window, overlap, gaussian=gaussian,
                                   batch_size=batch_size, accumulate=accumulate,
                                   progress=progress, ramp=ramp):
        decided = torch.stack([decide(sample) for sample in slab])
        if labels is None:
            labels = torch.zeros((x.shape[0], *padded.shape[2:]), dtype=decided.dtype,
                                 device=decided.device)
        labels[:, row:row + decided.shape[1]] = decided
        del slab, decided
    assert labels is not None
    return labels[(slice(None), *crop)]
