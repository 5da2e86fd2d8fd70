"""Geometric augmentation as pure functions on batched tensors.

Every geometric transform is expressed as a sampling map from output to input coordinates in
normalised units (``align_corners=True``: -1 and 1 are the centres of the first and last voxel),
in *array axis order* (``(H, W)`` or ``(D, H, W)``):

    p = M u + d(u)

``M`` (``(B, n, n)`` per sample) composes flips, rot90 and the random affine (rotation, scaling),
``d`` is the elastic displacement field.  One ``grid_sample`` call then resamples the whole
batch: images bilinear/trilinear, masks nearest (exact label values, never blended).  Samples that
only need flips/rot90 skip resampling and are permuted by indexing instead (exact and cheaper).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.interpolate import CubicSpline

from unetkit.data.transfer import to_device


def flip_matrix(flips: torch.Tensor) -> torch.Tensor:
    """``(B, n)`` bool flips -> ``(B, n, n)`` diagonal sampling matrices (``p_i = -u_i``)."""
    return torch.diag_embed(1.0 - 2.0 * flips.float())


def rot90_matrix(k: int, axes: tuple[int, int], n: int) -> torch.Tensor:
    """``(n, n)`` sampling matrix equal to ``torch.rot90(x, k, dims=axes)`` on the spatial axes.

    ``torch.rot90`` once gives ``out[i, j] = x[j, -1 - i]``, i.e. ``p_a = u_b, p_b = -u_a``.
    """
    a, b = axes
    once = torch.eye(n)
    once[a, a], once[a, b], once[b, a], once[b, b] = 0.0, 1.0, -1.0, 0.0
    return torch.linalg.matrix_power(once, k % 4)


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotations in voxel units, in array axis order.

    Args:
        angles: ``(B, 1)`` radians for 2-D, ``(B, 3)`` radians about each axis for 3-D.

    Returns:
        ``(B, n, n)`` rotation matrices (n = 2 or 3).
    """
    c, s = torch.cos(angles), torch.sin(angles)
    if angles.shape[1] == 1:
        return torch.stack([torch.cat([c, -s], 1), torch.cat([s, c], 1)], 1)
    result = torch.eye(3, dtype=angles.dtype).repeat(angles.shape[0], 1, 1)
    for axis in range(3):
        j, k = (axis + 1) % 3, (axis + 2) % 3
        about = torch.eye(3, dtype=angles.dtype).repeat(angles.shape[0], 1, 1)
        about[:, j, j], about[:, j, k] = c[:, axis], -s[:, axis]
        about[:, k, j], about[:, k, k] = s[:, axis], c[:, axis]
        result = result @ about
    return result


def affine_matrix(angles: torch.Tensor, scales: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Random affine as a normalised sampling matrix ``(B, n, n)``.

    Rotation and isotropic scaling act in voxel units about the patch centre (so non-square
    patches are not sheared); ``scale > 1`` zooms in.  ``D^-1 (R / scale) D`` with ``D`` the
    half-extent of each axis converts to normalised units.
    """
    half = torch.tensor([(s - 1) / 2 if s > 1 else 1.0 for s in shape], dtype=torch.float32)
    rotation = rotation_matrix(angles.float()) / scales.float().view(-1, 1, 1)
    return rotation * (half.view(1, 1, -1) / half.view(1, -1, 1))


def control_grid(shape: Sequence[int], spacing: float) -> tuple[int, ...]:
    """Control points per axis for a grid of ``spacing`` voxels (at least 2)."""
    return tuple(max(2, math.ceil((s - 1) / spacing) + 1) for s in shape)


def sampling_grid(matrix: torch.Tensor, shape: Sequence[int],
                  displacement: torch.Tensor | None = None) -> torch.Tensor:
    """``grid_sample`` grid ``(B, *shape, n)`` (xyz order) for ``p = M u + d(u)``."""
    n = len(shape)
    reverse = list(range(n - 1, -1, -1))
    theta = matrix[:, reverse][:, :, reverse]  # array order -> grid_sample's (x, y, z) order
    theta = torch.cat([theta, torch.zeros(theta.shape[0], n, 1, dtype=theta.dtype,
                                          device=theta.device)], dim=2)
    size = (theta.shape[0], 1, *shape)
    grid = F.affine_grid(theta, list(size), align_corners=True)
    if displacement is not None:
        grid = grid + displacement[:, reverse].movedim(1, -1)
    return grid


@lru_cache(maxsize=64)
def spline_weights(knots: int, size: int) -> torch.Tensor:
    """``(size, knots)`` weights of natural cubic spline interpolation along one axis.

    Knots sit at ``linspace(0, size - 1, knots)``; row ``i`` gives voxel ``i`` as a weighted sum
    of the knot values.  A natural spline reproduces linear functions exactly, so affine maps
    interpolate without error while random knot values give a smooth (C2) field.
    """
    positions = np.linspace(0.0, size - 1.0, knots)
    if knots == 2:
        weights = np.interp(np.arange(size), positions, [1.0, 0.0])
        return torch.from_numpy(np.stack([weights, 1.0 - weights], 1)).float()
    spline = CubicSpline(positions, np.eye(knots), bc_type="natural")
    return torch.from_numpy(spline(np.arange(size))).float()


def interpolated_grid(matrix: torch.Tensor, shape: Sequence[int],
                      displacement: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` grid ``(B, *shape, n)`` for ``p = M u + d(u)`` from a control grid.

    ``M u + d`` is evaluated at the control points only, then interpolated to every voxel with
    separable natural cubic splines (small matrix products instead of a full-resolution affine
    grid plus a separately interpolated field).  Exact for the affine part.

    Args:
        matrix: ``(B, n, n)`` normalised sampling matrices in array axis order.
        shape: full spatial shape.
        displacement: ``(B, n, *coarse)`` displacements in voxels at the control points.
    """
    n = len(shape)
    coarse = displacement.shape[2:]
    device = matrix.device
    axes = [torch.linspace(-1.0, 1.0, k, device=device) for k in coarse]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (n, *coarse)
    to_norm = to_device(torch.tensor([2.0 / max(s - 1, 1) for s in shape]), device)
    points = torch.einsum("bij,j...->bi...", matrix, base)
    points = points + displacement * to_norm.view(1, n, *[1] * n)
    points = points.flip(1)  # array order -> grid_sample's (x, y, z) order
    weights = [to_device(spline_weights(k, s), device) for k, s in zip(coarse, shape, strict=True)]
    if n == 2:
        return torch.einsum("bnij,yi,xj->byxn", points, *weights).contiguous()
    return torch.einsum("bnijk,zi,yj,xk->bzyxn", points, *weights).contiguous()


def resample(
    image: torch.Tensor, mask: torch.Tensor | None, grid: torch.Tensor,
    padding_mode: str = "zeros", mask_mode: str = "nearest", mask_fill: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resample ``image (B, C, *S)`` (linear) and ``mask (B, *S)`` on one grid.

    ``mask_mode`` ``nearest`` copies the nearest label; ``linear`` interpolates each label's
    indicator and keeps the most covered label, so label edges move with the image's linear
    interpolation instead of snapping up to half a voxel away from it. With zero padding,
    mask voxels that see only outside the patch get ``mask_fill`` (the ignore label when the
    masks have one: no label was drawn there).
    """
    out = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode,
                        align_corners=True)
    if mask is None:
        return out, None
    if mask_mode == "linear":
        labels = _resample_labels_linear(mask, grid, padding_mode, mask_fill)
        return out, labels
    if mask_mode != "nearest":
        raise ValueError(f"mask_mode must be 'nearest' or 'linear', got {mask_mode!r}")
    # zero padding reads 0 outside: shifted by the fill, outside comes back as the fill
    labels = F.grid_sample((mask - mask_fill)[:, None].to(grid.dtype), grid, mode="nearest",
                           padding_mode=padding_mode, align_corners=True)
    return out, labels[:, 0].to(mask.dtype) + mask_fill  # nearest copies values: no rounding


def _resample_labels_linear(mask: torch.Tensor, grid: torch.Tensor, padding_mode: str,
                            mask_fill: int = 0) -> torch.Tensor:
    """Label map resampled by linear interpolation of one-hot indicators, then argmax.

    With zero padding, voxels that see only outside get ``mask_fill``, or the smallest label
    (the background) when that is 0. On the CPU one indicator per label in the batch
    (``torch.unique``); elsewhere the same choice among the corners each voxel interpolates
    (``_most_covered_corner``), since finding the labels of a GPU batch would wait for the GPU.
    """
    if mask.device.type != "cpu":
        return _most_covered_corner(mask, grid, padding_mode, mask_fill)
    values = torch.unique(mask)
    one_hot = (mask[:, None] == values.view(1, -1, *[1] * (mask.ndim - 1))).to(grid.dtype)
    weights = F.grid_sample(one_hot, grid, mode="bilinear", padding_mode=padding_mode,
                            align_corners=True)
    labels = values[weights.argmax(dim=1)].to(mask.dtype)
    if mask_fill and padding_mode == "zeros":
        labels = torch.where(weights.sum(dim=1) > 0, labels, mask_fill)
    return labels


def _source_position(grid: torch.Tensor, size: int, padding_mode: str) -> torch.Tensor:
    """Voxel coordinate along one axis that ``grid_sample`` (``align_corners=True``) reads for
    normalised ``grid`` values: clamped (``border``) or mirrored (``reflection``) into the axis."""
    position = (grid + 1) * 0.5 * (size - 1)
    if padding_mode == "reflection" and size > 1:
        span = float(size - 1)
        position = position.abs()
        flips = torch.floor(position / span)
        extra = torch.fmod(position, span)
        position = torch.where(torch.remainder(flips, 2) == 0, extra, span - extra)
    if padding_mode != "zeros":
        position = position.clamp(0, size - 1)
    return position


def _most_covered_corner(mask: torch.Tensor, grid: torch.Tensor, padding_mode: str,
                         mask_fill: int = 0) -> torch.Tensor:
    """``_resample_labels_linear`` without knowing the labels: among the ``2**n`` voxels that
    linear interpolation weighs for an output voxel, the label whose weights sum highest (ties:
    the smaller label; voxels that see only outside: ``mask_fill``). Fixed shapes, nothing read
    back."""
    batch, size = mask.shape[0], mask.shape[1:]
    n = len(size)
    flat = mask.reshape(batch, -1)
    position = [_source_position(grid[..., n - 1 - a], size[a], padding_mode) for a in range(n)]
    low = [p.floor() for p in position]
    labels, weights = [], []
    for corner in itertools.product((0, 1), repeat=n):
        index, weight, inside = None, None, None
        for a, step in enumerate(corner):
            i = low[a].long() + step
            w = position[a] - low[a] if step else low[a] + 1 - position[a]
            ok = (i >= 0) & (i < size[a])
            i = i.clamp(0, size[a] - 1)
            index = i if index is None else index * size[a] + i
            weight = w if weight is None else weight * w
            inside = ok if inside is None else inside & ok
        labels.append(torch.gather(flat, 1, index.reshape(batch, -1)).view(index.shape))
        weights.append(torch.where(inside, weight, 0.0))
    covered = [w.clone() for w in weights]
    for c, d in itertools.combinations(range(len(labels)), 2):
        same = labels[c] == labels[d]
        covered[c] += torch.where(same, weights[d], 0.0)
        covered[d] += torch.where(same, weights[c], 0.0)
    best, out = covered[0], labels[0]
    for score, label in zip(covered[1:], labels[1:], strict=True):
        better = (score > best) | ((score == best) & (label < out))
        best, out = torch.where(better, score, best), torch.where(better, label, out)
    return torch.where(best > 0, out, mask_fill).to(mask.dtype)


def permute_sample(x: torch.Tensor, flips: Sequence[bool], k: int,
                   axes: tuple[int, int], lead: int) -> torch.Tensor:
    """Flip then rot90 one sample by indexing; spatial axes start after ``lead`` axes."""
    dims = [lead + i for i, f in enumerate(flips) if f]
    if dims:
        x = torch.flip(x, dims)
    if k % 4:
        x = torch.rot90(x, k, dims=(lead + axes[0], lead + axes[1]))
    return x
