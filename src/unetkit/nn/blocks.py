"""Building blocks shared by every model; they know nothing of stage counts.

All blocks take ``(B, C, *spatial)`` tensors, 2D or 3D by ``spatial_dims``. Kernel sizes and
up/downsampling factors are one int for every axis or one value per axis (anisotropic data:
kernel 1 and factor 1 along a thick-slice axis). With ``padding='valid'`` each 3x3 convolution
trims one voxel per side (two convs: 4 in total).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from unetkit.nn import layers

BLOCKS = ("double", "residual")

PerAxis = int | Sequence[int]


def center_crop(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Crop the spatial axes of ``(B, C, *S)`` to ``size`` around the centre (a view, no copy)."""
    index = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size, strict=True):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return x[tuple(index)]


def _padding(kernel_size: PerAxis, padding: str) -> int | tuple[int, ...]:
    return layers.same_padding(kernel_size) if padding == "same" else 0


class DoubleConv(nn.Sequential):
    """(conv => [norm] => ReLU) * 2 => [dropout]: ``(B, in, *S) -> (B, out, *S')``.

    ``S' = S`` for ``padding='same'`` and ``S - 2 * (kernel_size - 1)`` for ``'valid'`` (3x3:
    ``S - 4``). With a norm the convolutions have no bias (the norm's shift replaces it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        dropout: float = 0.0,
        kernel_size: PerAxis = 3,
    ) -> None:
        pad, bias, k = _padding(kernel_size, padding), norm == "none", kernel_size
        dims, out = spatial_dims, out_channels
        super().__init__(
            OrderedDict(
                conv1=layers.conv(dims, in_channels, out, k, padding=pad, bias=bias),
                norm1=layers.norm(norm, spatial_dims, out_channels, norm_groups),
                act1=nn.ReLU(inplace=True),
                conv2=layers.conv(dims, out, out, k, padding=pad, bias=bias),
                norm2=layers.norm(norm, spatial_dims, out_channels, norm_groups),
                act2=nn.ReLU(inplace=True),
                drop=layers.dropout(spatial_dims, dropout),
            )
        )


class ResidualBlock(nn.Module):
    """conv => [norm] => ReLU => conv => [norm], plus shortcut, => ReLU => [dropout].

    The shortcut is the identity when ``in == out`` and a 1x1 convolution (+ norm) otherwise
    (He et al. 2016, projection shortcut). For ``padding='valid'`` the shortcut input is centre-
    cropped by ``kernel_size - 1`` (2 for 3x3) per side to match. Shapes: ``(B, in, *S) ->
    (B, out, *S')`` as ``DoubleConv``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        dropout: float = 0.0,
        kernel_size: PerAxis = 3,
    ) -> None:
        super().__init__()
        pad, bias, k = _padding(kernel_size, padding), norm == "none", kernel_size
        dims, out = spatial_dims, out_channels
        self.conv1 = layers.conv(dims, in_channels, out, k, padding=pad, bias=bias)
        self.norm1 = layers.norm(norm, spatial_dims, out_channels, norm_groups)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = layers.conv(dims, out, out, k, padding=pad, bias=bias)
        self.norm2 = layers.norm(norm, spatial_dims, out_channels, norm_groups)
        if in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                layers.conv(spatial_dims, in_channels, out_channels, 1, bias=bias),
                layers.norm(norm, spatial_dims, out_channels, norm_groups),
            )
        self.act2 = nn.ReLU(inplace=True)
        self.drop = layers.dropout(spatial_dims, dropout)
        # 'valid': two unpadded convolutions trim kernel - 1 per side and axis
        kernels = (k,) * spatial_dims if isinstance(k, int) else tuple(k)
        trims = [size - 1 if padding == "valid" else 0 for size in kernels]
        self._trim = (slice(None), slice(None), *(slice(t, -t or None) for t in trims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, *S) -> (B, out, *S')``."""
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        out = out + self.shortcut(x[self._trim])
        return self.drop(self.act2(out))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) that reweights a skip connection.

    ``alpha = sigmoid(psi(ReLU(W_x * skip + W_g * gate)))``, where ``W_x`` is a convolution with
    kernel = stride = the level's pooling factor (2x2 stride 2 by default) bringing the skip to
    the gate's (coarser) grid, ``W_g`` and ``psi`` are 1x1 convolutions. ``alpha`` is upsampled
    (bi/trilinear, by the same factor) back to the skip's grid and multiplies it.
    """

    def __init__(
        self,
        skip_channels: int,
        gate_channels: int,
        inter_channels: int | None = None,
        *,
        spatial_dims: int = 2,
        stride: PerAxis = 2,
    ) -> None:
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 1)
        self.theta_x = layers.conv(
            spatial_dims, skip_channels, inter, stride, stride=stride, bias=False
        )
        self.phi_g = layers.conv(spatial_dims, gate_channels, inter, 1)
        self.act = nn.ReLU(inplace=True)
        self.psi = layers.conv(spatial_dims, inter, 1, 1)
        self.up = layers.upsample(spatial_dims, stride)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Gate ``skip (B, Cs, *(S * stride))`` with ``gate (B, Cg, *S)``; returns the skip's
        shape."""
        alpha = torch.sigmoid(self.psi(self.act(self.theta_x(skip) + self.phi_g(gate))))
        return skip * self.up(alpha).to(skip.dtype)


def make_block(kind: str, in_channels: int, out_channels: int, **options: object) -> nn.Module:
    """A ``DoubleConv`` (``kind='double'``) or ``ResidualBlock`` (``'residual'``)."""
    if kind == "double":
        return DoubleConv(in_channels, out_channels, **options)  # type: ignore[arg-type]
    if kind == "residual":
        return ResidualBlock(in_channels, out_channels, **options)  # type: ignore[arg-type]
    raise ValueError(f"block must be one of {BLOCKS}, got {kind!r}")


def make_upsample(
    spatial_dims: int, in_channels: int, out_channels: int, mode: str, stride: PerAxis = 2
) -> nn.Module:
    """Upsampling by ``stride`` per axis (2x by default): ``(B, in, *S) -> (B, out, *S')``.

    ``S' = S * stride``. ``'transpose'``: a transposed convolution with kernel = stride.
    ``'interpolate'``: a 1x1 convolution then bi/trilinear interpolation; both are linear, so
    doing the convolution first gives the same result as the textbook order at a quarter (2D) or
    eighth (3D) of the cost.
    """
    if mode == "transpose":
        return layers.conv_transpose(spatial_dims, in_channels, out_channels, stride)
    if mode == "interpolate":
        return nn.Sequential(
            layers.conv(spatial_dims, in_channels, out_channels, 1),
            layers.upsample(spatial_dims, stride),
        )
    raise ValueError(f"upsample must be 'transpose' or 'interpolate', got {mode!r}")


class UpBlock(nn.Module):
    """Upsample => [attention-gate the skip] => concat [up, skip] => block.

    Shapes: ``x (B, in, *S)``, ``skip (B, skip, *S_skip)`` -> ``(B, out, *S_out)``; the upsampled
    ``x`` has ``out`` channels and size ``S * stride``. ``kernel_size`` is the block's (that of
    the matching encoder stage). 'valid' padding centre-crops the skip to the upsampled size.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        spatial_dims: int = 2,
        block: str = "double",
        upsample: str = "transpose",
        attention: bool = False,
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        dropout: float = 0.0,
        stride: PerAxis = 2,
        kernel_size: PerAxis = 3,
    ) -> None:
        super().__init__()
        self.up = make_upsample(spatial_dims, in_channels, out_channels, upsample, stride)
        self.gate = (
            AttentionGate(skip_channels, in_channels, spatial_dims=spatial_dims, stride=stride)
            if attention
            else None
        )
        self.conv = make_block(
            block,
            out_channels + skip_channels,
            out_channels,
            spatial_dims=spatial_dims,
            norm=norm,
            norm_groups=norm_groups,
            padding=padding,
            dropout=dropout,
            kernel_size=kernel_size,
        )
        self._crop = padding == "valid"

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``(B, in, *S), (B, skip, *S_skip) -> (B, out, *S_out)``."""
        up = self.up(x)
        if self._crop:
            skip = center_crop(skip, tuple(up.shape[2:]))
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([up, skip], dim=1))
