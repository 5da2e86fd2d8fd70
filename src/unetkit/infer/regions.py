"""Memory-bounded sliding window: labels written region by region.

``sliding_window_inference`` keeps a float accumulator of ``C x volume``; for a large 3-D volume
with many classes that can be several GB. Here windows are processed in rows along the first
spatial axis and the accumulator only spans one window's extent along that axis: once every
window that touches a slab of rows has been added, the slab is final, turned into labels and
dropped. Memory: ``C x window[0] x rest-of-volume`` floats plus the label map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unetkit.infer.sliding_window import (
    _ACCUMULATORS,
    Network,
    Progress,
    _batches,
    _prepare,
    _run,
    gaussian_importance,
    window_slices,
    window_starts,
)


def decide_labels(blended: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Blended network outputs ``(C, *spatial)`` -> labels ``(*spatial)`` (uint8).

    ``C == 1`` is a binary sigmoid output: label 1 where the value exceeds ``threshold``
    (0.0 for logits); otherwise the arg-max over channels.
    """
    if blended.shape[0] == 1:
        return (blended[0] > threshold).to(torch.uint8)
    return blended.argmax(0).to(torch.uint8 if blended.shape[0] <= 256 else torch.int64)


def _shift(buffer: torch.Tensor, rows: int, axis: int) -> None:
    """Move ``buffer`` by ``rows`` towards the start of ``axis`` in place, zero-filling the end."""
    length = buffer.shape[axis]
    if rows >= length:
        buffer.zero_()
        return
    buffer.narrow(axis, 0, length - rows).copy_(buffer.narrow(axis, rows, length - rows).clone())
    buffer.narrow(axis, length - rows, rows).zero_()


def sliding_window_labels(
    x: torch.Tensor,
    network: Network,
    window: Sequence[int] | None,
    overlap: float = 0.25,
    *,
    gaussian: bool = True,
    batch_size: int = 1,
    accumulate: str = "float32",
    pad_mode: str = "constant",
    threshold: float = 0.0,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Like ``sliding_window_inference`` followed by ``decide_labels``, in bounded memory.

    Args:
        x: input ``(B, C_in, *spatial)``.
        network: maps ``(n, C_in, *window)`` to raw outputs ``(n, C_out, *window)``.
        window, overlap, gaussian, batch_size, accumulate, pad_mode, progress: as in
            ``sliding_window_inference``.
        threshold: decision threshold on the blended output when ``C_out == 1``.

    Returns:
        Labels ``(B, *spatial)``, uint8 (int64 beyond 256 classes).
    """
    if accumulate not in _ACCUMULATORS:
        raise ValueError(f"accumulate must be one of {sorted(_ACCUMULATORS)}, got {accumulate!r}")
    padded, window, crop = _prepare(x, window, pad_mode)
    spatial = tuple(padded.shape[2:])
    rows = window_starts(spatial[0], window[0], overlap)
    rest = window_slices(spatial[1:], window[1:], overlap)
    weight = (gaussian_importance(window, device=x.device) if gaussian
              else torch.ones(window, device=x.device))
    total = len(rows) * len(rest) * x.shape[0]
    done = 0
    results = []
    for b in range(x.shape[0]):
        labels = None
        acc = None
        norm = torch.zeros((window[0], *spatial[1:]), dtype=torch.float32, device=x.device)
        base = 0
        for start in rows + [spatial[0]]:
            if start > base:  # rows [base, start) will receive no more windows
                final = min(start - base, window[0])
                labels[base:base + final] = decide_labels(acc[:, :final].float() / norm[:final],
                                                          threshold)
                _shift(acc, start - base, 1)
                _shift(norm, start - base, 0)
                base = start
            if start >= spatial[0]:
                break
            group_slices = [(slice(start, start + window[0]), *r) for r in rest]
            for group in _batches(group_slices, batch_size):
                batch = torch.cat([padded[(slice(b, b + 1), slice(None), *sl)] for sl in group])
                out = _run(network, batch, window).float() * weight
                if acc is None:
                    acc = torch.zeros((out.shape[1], window[0], *spatial[1:]),
                                      dtype=_ACCUMULATORS[accumulate], device=x.device)
                    dtype = torch.uint8 if out.shape[1] <= 256 else torch.int64
                    labels = torch.zeros(spatial, dtype=dtype, device=x.device)
                for k, sl in enumerate(group):
                    local = (slice(0, window[0]), *sl[1:])
                    acc[(slice(None), *local)] += out[k].to(acc.dtype)
                    norm[local] += weight
                done += len(group)
                if progress:
                    progress(done, total)
        results.append(labels[crop])
    return torch.stack(results)
