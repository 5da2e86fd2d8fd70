"""The one place where ``spatial_dims`` (2 or 3) picks torch layer classes.

Every other module in ``unetkit.nn`` asks these factories for layers, so a model is 2D or 3D by one
argument and nothing else in the package branches on dimensionality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batch", "instance", "group")
SPATIAL_DIMS = (2, 3)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCH = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class _LayoutKeeping:
    """Instance norm computed as a group norm with one group per channel (the same formula).

    torch's ``instance_norm`` returns a contiguous (NCDHW) tensor for a channels-last input, so
    the next convolution converts it back, forward and backward; ``group_norm`` keeps the layout
    (a 3D U-Net step on 2 CPU cores: 1.80 -> 1.59 s). Parameters and state dict are those of
    ``nn.InstanceNorm2d/3d`` (affine, no running statistics).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


class InstanceNorm2d(_LayoutKeeping, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(affine=True)`` that keeps channels-last tensors channels-last."""


class InstanceNorm3d(_LayoutKeeping, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d(affine=True)`` that keeps channels-last tensors channels-last."""


_INSTANCE = {2: InstanceNorm2d, 3: InstanceNorm3d}
_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}
_INTERPOLATION = {2: "bilinear", 3: "trilinear"}


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    padding: int = 0,
    bias: bool = True,
) -> nn.Module:
    """A 2D or 3D convolution ``(B, in, *S) -> (B, out, *S')``."""
    cls = _CONV[_check_dims(spatial_dims)]
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)


def conv_transpose(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """A kernel-2, stride-2 transposed convolution ``(B, in, *S) -> (B, out, *2S)``."""
    cls = _CONV_T[_check_dims(spatial_dims)]
    return cls(in_channels, out_channels, kernel_size=2, stride=2)


def max_pool(spatial_dims: int) -> nn.Module:
    """A 2x2 (2x2x2) max-pool with stride 2 ``(B, C, *S) -> (B, C, *S/2)``."""
    return _POOL[_check_dims(spatial_dims)](kernel_size=2, stride=2)


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
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {name!r}")


def dropout(spatial_dims: int, p: float) -> nn.Module:
    """Channel (spatial) dropout, or ``nn.Identity`` when ``p == 0``."""
    _check_dims(spatial_dims)
    return _DROPOUT[spatial_dims](p) if p > 0 else nn.Identity()


def interpolation_mode(spatial_dims: int) -> str:
    """The linear interpolation mode for ``F.interpolate``: bilinear (2D) or trilinear (3D)."""
    return _INTERPOLATION[_check_dims(spatial_dims)]
