"""Building blocks shared by every model; they know nothing of stage counts.

All blocks take ``(B, C, *spatial)`` tensors, 2D or 3D by ``spatial_dims``. With
``padding='valid'`` each 3x3 convolution trims one voxel per side (two convs: 4 in total).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from unetkit.nn import layers

BLOCKS = ("double", "residual")


def center_crop(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Crop the spatial axes of ``(B, C, *S)`` to ``size`` around the centre (a view, no copy)."""
    index = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size, strict=True):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return x[tuple(index)]


class DoubleConv(nn.Sequential):
    """(conv => [norm] => ReLU) * 2 => [dropout]: ``(B, in, *S) -> (B, out, *S')``.

    ``S' = S`` for ``padding='same'`` and ``S - 4`` for ``'valid'``. With a norm the convolutions
    have no bias (the norm's shift replaces it).
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
    ) -> None:
        pad, bias = (1 if padding == "same" else 0), norm == "none"
        dims, out = spatial_dims, out_channels
        super().__init__(
            OrderedDict(
                conv1=layers.conv(dims, in_channels, out, 3, padding=pad, bias=bias),
                norm1=layers.norm(norm, spatial_dims, out_channels, norm_groups),
                act1=nn.ReLU(inplace=True),
                conv2=layers.conv(dims, out, out, 3, padding=pad, bias=bias),
                norm2=layers.norm(norm, spatial_dims, out_channels, norm_groups),
                act2=nn.ReLU(inplace=True),
                drop=layers.dropout(spatial_dims, dropout),
            )
        )


class ResidualBlock(nn.Module):
    """conv => [norm] => ReLU => conv => [norm], plus shortcut, => ReLU => [dropout].

    The shortcut is the identity when ``in == out`` and a 1x1 convolution (+ norm) otherwise
    (He et al. 2016, projection shortcut). For ``padding='valid'`` the shortcut input is centre-
    cropped by 2 per side to match. Shapes: ``(B, in, *S) -> (B, out, *S')`` as ``DoubleConv``.
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
    ) -> None:
        super().__init__()
        pad, bias = (1 if padding == "same" else 0), norm == "none"
        dims, out = spatial_dims, out_channels
        self.conv1 = layers.conv(dims, in_channels, out, 3, padding=pad, bias=bias)
        self.norm1 = layers.norm(norm, spatial_dims, out_channels, norm_groups)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = layers.conv(dims, out, out, 3, padding=pad, bias=bias)
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
        trim = slice(2, -2) if padding == "valid" else slice(None)
        self._trim = (slice(None), slice(None)) + (trim,) * spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, *S) -> (B, out, *S')``."""
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        out = out + self.shortcut(x[self._trim])
        return self.drop(self.act2(out))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) that reweights a skip connection.

    ``alpha = sigmoid(psi(ReLU(W_x * skip + W_g * gate)))``, where ``W_x`` is a 2x2 stride-2
    convolution bringing the skip to the gate's (coarser) grid, ``W_g`` and ``psi`` are 1x1
    convolutions. ``alpha`` is upsampled (bi/trilinear) back to the skip's grid and multiplies it.
    """

    def __init__(
        self,
        skip_channels: int,
        gate_channels: int,
        inter_channels: int | None = None,
        *,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 1)
        self.theta_x = layers.conv(spatial_dims, skip_channels, inter, 2, stride=2, bias=False)
        self.phi_g = layers.conv(spatial_dims, gate_channels, inter, 1)
        self.act = nn.ReLU(inplace=True)
        self.psi = layers.conv(spatial_dims, inter, 1, 1)
        self.up = nn.Upsample(scale_factor=2, mode=layers.interpolation_mode(spatial_dims))

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Gate ``skip (B, Cs, *2S)`` with ``gate (B, Cg, *S)``; returns ``(B, Cs, *2S)``."""
        alpha = torch.sigmoid(self.psi(self.act(self.theta_x(skip) + self.phi_g(gate))))
        return skip * self.up(alpha).to(skip.dtype)


def make_block(kind: str, in_channels: int, out_channels: int, **options: object) -> nn.Module:
    """A ``DoubleConv`` (``kind='double'``) or ``ResidualBlock`` (``'residual'``)."""
    if kind == "double":
        return DoubleConv(in_channels, out_channels, **options)  # type: ignore[arg-type]
    if kind == "residual":
        return ResidualBlock(in_channels, out_channels, **options)  # type: ignore[arg-type]
    raise ValueError(f"block must be one of {BLOCKS}, got {kind!r}")


def make_upsample(spatial_dims: int, in_channels: int, out_channels: int, mode: str) -> nn.Module:
    """2x upsampling ``(B, in, *S) -> (B, out, *2S)``.

    ``'transpose'``: a kernel-2 stride-2 transposed convolution. ``'interpolate'``: a 1x1
    convolution then bi/trilinear interpolation; both are linear, so doing the convolution first
    gives the same result as the textbook order at a quarter (2D) or eighth (3D) of the cost.
    """
    if mode == "transpose":
        return layers.conv_transpose(spatial_dims, in_channels, out_channels)
    if mode == "interpolate":
        return nn.Sequential(
            layers.conv(spatial_dims, in_channels, out_channels, 1),
            nn.Upsample(scale_factor=2, mode=layers.interpolation_mode(spatial_dims)),
        )
    raise ValueError(f"upsample must be 'transpose' or 'interpolate', got {mode!r}")


class UpBlock(nn.Module):
    """Upsample => [attention-gate the skip] => concat [up, skip] => block.

    Shapes: ``x (B, in, *S)``, ``skip (B, skip, *S_skip)`` -> ``(B, out, *S_out)``; the upsampled
    ``x`` has ``out`` channels. 'valid' padding centre-crops the skip to the upsampled size.
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
    ) -> None:
        super().__init__()
        self.up = make_upsample(spatial_dims, in_channels, out_channels, upsample)
        self.gate = (
            AttentionGate(skip_channels, in_channels, spatial_dims=spatial_dims)
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
