"""The one place where ``spatial_dims`` (2 or 3) picks torch layer classes.

Every other module in ``unetkit.nn`` asks these factories for layers, so a model is 2D or 3D by one
argument and nothing else in the package branches on dimensionality.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from unetkit.nn import functional

NORMS = ("none", "batch", "instance", "group")
SPATIAL_DIMS = (2, 3)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class _LeanInstanceNorm:
    """Instance norm in its input's dtype (``unetkit.nn.functional.instance_norm``): under
    autocast no float32 copy is made or saved; on the CPU channels-last stays channels-last.
    Parameters and state dict are those of ``nn.InstanceNorm2d/3d`` (affine, no running
    statistics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.instance_norm(x, self.num_features, self.weight, self.bias, self.eps)


class InstanceNorm2d(_LeanInstanceNorm, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(affine=True)`` computed by ``unetkit.nn.functional.instance_norm``."""


class InstanceNorm3d(_LeanInstanceNorm, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d(affine=True)`` computed by ``unetkit.nn.functional.instance_norm``."""


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` in its input's dtype (``unetkit.nn.functional.group_norm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class _LeanMaxPool:
    """Max pooling (kernel = stride) that saves no indices (``unetkit.nn.functional.max_pool``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.max_pool(x, self.kernel_size)


class MaxPool2d(_LeanMaxPool, nn.MaxPool2d):
    """``nn.MaxPool2d(k, k)`` computed by ``unetkit.nn.functional.max_pool``."""


class MaxPool3d(_LeanMaxPool, nn.MaxPool3d):
    """``nn.MaxPool3d(k, k)`` computed by ``unetkit.nn.functional.max_pool``."""


_INSTANCE = {2: InstanceNorm2d, 3: InstanceNorm3d}
_POOL = {2: MaxPool2d, 3: MaxPool3d}
_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}
_INTERPOLATION = {2: "bilinear", 3: "trilinear"}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def per_axis(value: int | Sequence[int]) -> int | tuple[int, ...]:
    """``value`` as torch layers take it: one int when every axis has the same value.

    Keeps the default layers identical to the isotropic ones (``MaxPool2d(2, 2)``,
    ``Upsample(scale_factor=2.0)``) while anisotropic values become per-axis tuples.
    """
    if isinstance(value, Integral):
        return int(value)
    values = tuple(int(v) for v in value)
    return values[0] if len(set(values)) == 1 else values


def same_padding(kernel_size: int | Sequence[int]) -> int | tuple[int, ...]:
    """Padding that keeps the size for an odd kernel: ``k // 2`` per axis (3 -> 1, 1 -> 0)."""
    kernel = per_axis(kernel_size)
    return kernel // 2 if isinstance(kernel, int) else tuple(k // 2 for k in kernel)


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int] = 3,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    bias: bool = True,
) -> nn.Module:
    """A 2D or 3D convolution ``(B, in, *S) -> (B, out, *S')``; kernel, stride, padding per axis
    or one int for all."""
    cls = _CONV[_check_dims(spatial_dims)]
    return cls(
        in_channels,
        out_channels,
        per_axis(kernel_size),
        stride=per_axis(stride),
        padding=per_axis(padding),
        bias=bias,
    )


def conv_transpose(
    spatial_dims: int, in_channels: int, out_channels: int, stride: int | Sequence[int] = 2
) -> nn.Module:
    """A transposed convolution with kernel = stride: ``(B, in, *S) -> (B, out, *(S * stride))``.

    The default (2 on every axis) is the textbook kernel-2, stride-2 upsampling.
    """
    cls = _CONV_T[_check_dims(spatial_dims)]
    factor = per_axis(stride)
    return cls(in_channels, out_channels, kernel_size=factor, stride=factor)


def max_pool(spatial_dims: int, stride: int | Sequence[int] = 2) -> nn.Module:
    """Max-pool with kernel = stride: ``(B, C, *S) -> (B, C, *(S / stride))`` (default 2x2(x2))."""
    factor = per_axis(stride)
    return _POOL[_check_dims(spatial_dims)](kernel_size=factor, stride=factor)


def upsample(spatial_dims: int, scale: int | Sequence[int] = 2) -> nn.Module:
    """Bi/trilinear upsampling by ``scale`` per axis: ``(B, C, *S) -> (B, C, *(S * scale))``."""
    factor = per_axis(scale)
    return nn.Upsample(scale_factor=factor, mode=interpolation_mode(spatial_dims))


def norm(name: str, spatial_dims: int, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation layer by short name: ``none`` | ``batch`` | ``instance`` | ``group``.

    Instance norm is affine (learned scale and shift) and keeps no running statistics, as in
    nnU-Net. ``none`` gives ``nn.Identity`` so blocks keep one layout for every choice.
    """
    _check_dims(spatial_dims)
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return _BATCH[spatial_dims](channels)
    if name == "instance":
        return _INSTANCE[spatial_dims](channels, affine=True)
    if name == "group":
        if channels % groups:
            raise ValueError(
                f"norm='group' needs channels divisible by norm_groups: {channels} channels, "
                f"norm_groups={groups}"
            )
        return GroupNorm(groups, channels)
    raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {name!r}")


def dropout(spatial_dims: int, p: float) -> nn.Module:
    """Channel (spatial) dropout, or ``nn.Identity`` when ``p == 0``."""
    _check_dims(spatial_dims)
    return _DROPOUT[spatial_dims](p) if p > 0 else nn.Identity()


def interpolation_mode(spatial_dims: int) -> str:
    """The linear interpolation mode for ``F.interpolate``: bilinear (2D) or trilinear (3D)."""
    return _INTERPOLATION[_check_dims(spatial_dims)]
