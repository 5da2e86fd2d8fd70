"""Resampling images and label maps to another voxel spacing, and exactly back.

Voxel ``i`` of an axis of ``n`` voxels covers ``[i, i + 1) * spacing``: the physical extent
``n * spacing`` is kept and the new size is ``round(n * spacing / target)``. Going back uses the
same convention with the original size, so a map computed on the resampled grid lands on the
original grid voxel for voxel (size, spacing and affine of the input are unchanged).

Images are interpolated linearly (bi/trilinear; ``torch.nn.functional.interpolate`` with
``align_corners=False``, which is exactly this convention). Label maps are interpolated as
one-hot indicators, then the most covered label is kept ("linear on one-hot", as nnU-Net does),
so thin structures survive better than with nearest-neighbour sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resampled_shape(shape: Sequence[int], spacing: Sequence[float],
                    target: Sequence[float | None]) -> tuple[int, ...]:
    """Spatial shape after resampling ``shape`` from ``spacing`` to ``target`` (None: keep)."""
    out = []
    for n, s, t in zip(shape, spacing, target, strict=True):
        out.append(int(n) if t is None else max(1, int(round(n * float(s) / float(t)))))
    return tuple(out)


def _interpolate(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(N, C, *S)`` float -> ``(N, C, *shape)``, linear, ``align_corners=False``."""
    if tuple(x.shape[2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=tuple(int(n) for n in shape), mode=_MODES[x.dim() - 2],
                         align_corners=False)


def resample_image(image: np.ndarray | torch.Tensor, shape: Sequence[int]
                   ) -> np.ndarray | torch.Tensor:
    """``(C, *S)`` image (or class scores) -> ``(C, *shape)`` float32, linear interpolation.

    Numpy in, numpy out; a tensor stays a tensor on its device.
    """
    tensor = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    out = _interpolate(tensor.float()[None], shape)[0]
    return out if isinstance(image, torch.Tensor) else out.numpy()


def resample_labels(labels: np.ndarray, shape: Sequence[int], chunk: int = 8) -> np.ndarray:
    """``(*S)`` integer label map -> ``(*shape)``: each label's indicator interpolated
    linearly, the most covered label kept (ties to the lower label value).

    Labels are processed ``chunk`` at a time, so memory stays ``chunk`` float maps.
    """
    if tuple(labels.shape) == tuple(shape):
        return labels
    values = np.unique(labels)
    best = torch.full(tuple(shape), -1.0)
    result = torch.zeros(tuple(shape), dtype=torch.int64)
    source = torch.from_numpy(np.ascontiguousarray(labels))
    for start in range(0, len(values), chunk):
        group = torch.as_tensor(values[start:start + chunk])
        one_hot = (source[None] == group.view(-1, *[1] * labels.ndim)).float()
        weights = _interpolate(one_hot[None], shape)[0]
        top, index = weights.max(dim=0)
        better = top > best
        best = torch.where(better, top, best)
        result = torch.where(better, group[index], result)
    return result.numpy().astype(labels.dtype, copy=False)


def needs_resampling(spacing: Sequence[float], target: Sequence[float | None] | None,
                     rtol: float = 1e-3) -> bool:
    """True when some axis' spacing differs from its target by more than ``rtol``."""
    if target is None:
        return False
    return any(t is not None and abs(float(s) - float(t)) > rtol * float(t)
               for s, t in zip(spacing, target, strict=True))
