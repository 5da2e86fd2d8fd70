"""Expanding paths. Decoders take the encoder's channel list, never an encoder object.

``encoder_channels`` is highest resolution first, bottleneck last (``depth + 1`` entries). Every
decoder returns a list of feature maps, full resolution first, one per deep-supervision head.
``strides`` (``depth`` entries) and ``kernel_sizes`` (``depth + 1``) are the encoder's: the
upsampling into level ``i`` undoes pooling ``strides[i]`` and the blocks of level ``i`` use
``kernel_sizes[i]``; None means 2 and 3 on every axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetkit.nn.blocks import DoubleConv, PerAxis, UpBlock, center_crop, make_upsample


def _defaults(
    depth: int, strides: Sequence[PerAxis] | None, kernel_sizes: Sequence[PerAxis] | None
) -> tuple[Sequence[PerAxis], Sequence[PerAxis]]:
    return (
        strides if strides is not None else [2] * depth,
        kernel_sizes if kernel_sizes is not None else [3] * (depth + 1),
    )


class UNetDecoder(nn.Module):
    """U-Net decoder: one ``UpBlock`` per level, deepest first.

    ``stages[k]`` upsamples the previous output and merges skip ``depth - 1 - k``.

    Args:
        encoder_channels: channels of the skips, bottleneck last.
        spatial_dims, block, upsample, norm, norm_groups, padding: see ``UpBlock``.
        attention: gate every skip with an ``AttentionGate`` (Attention U-Net).
        strides, kernel_sizes: the encoder's (see the module docstring).

    Attributes:
        out_channels: channels of the returned maps, full resolution first.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        spatial_dims: int = 2,
        block: str = "double",
        upsample: str = "transpose",
        attention: bool = False,
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        strides: Sequence[PerAxis] | None = None,
        kernel_sizes: Sequence[PerAxis] | None = None,
    ) -> None:
        super().__init__()
        chans = list(encoder_channels)
        self.out_channels = chans[:-1]
        strides, kernels = _defaults(len(chans) - 1, strides, kernel_sizes)
        self.stages = nn.ModuleList(
            UpBlock(
                chans[level + 1],
                chans[level],
                chans[level],
                spatial_dims=spatial_dims,
                block=block,
                upsample=upsample,
                attention=attention,
                norm=norm,
                norm_groups=norm_groups,
                padding=padding,
                stride=strides[level],
                kernel_size=kernels[level],
            )
            for level in reversed(range(len(chans) - 1))
        )

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Skips ``[(B, c0, *S), ..., (B, c_depth, *S/2**depth)]`` -> maps ``[(B, c0, *S), ...]``.

        Returns ``depth`` maps: full resolution first, then 1/2, 1/4, ... 1/2**(depth-1) (each
        map at its skip's size, i.e. divided per axis by the product of the strides above it).
        """
        x = skips[-1]
        outputs = []
        for stage, skip in zip(self.stages, reversed(skips[:-1]), strict=True):
            x = stage(x, skip)
            outputs.append(x)
        return outputs[::-1]


class NestedNode(nn.Module):
    """UNet++ node ``X(i,j) = block(concat[up(X(i+1,j-1)), X(i,0), ..., X(i,j-1)])``.

    ``up`` undoes the pooling below level ``i`` (``stride``); the block uses ``kernel_size``.
    With ``padding='valid'`` the earlier nodes are centre-cropped to the upsampled size.
    """

    def __init__(
        self,
        below_channels: int,
        channels: int,
        num_skips: int,
        *,
        spatial_dims: int,
        upsample: str,
        norm: str,
        norm_groups: int,
        padding: str = "same",
        stride: PerAxis = 2,
        kernel_size: PerAxis = 3,
    ) -> None:
        super().__init__()
        self.up = make_upsample(spatial_dims, below_channels, channels, upsample, stride)
        self.conv = DoubleConv(
            channels * (num_skips + 1),
            channels,
            spatial_dims=spatial_dims,
            norm=norm,
            norm_groups=norm_groups,
            padding=padding,
            kernel_size=kernel_size,
        )
        self._crop = padding == "valid"

    def forward(self, below: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """``(B, c_below, *S/stride)`` and ``num_skips`` x ``(B, c, *S)`` -> ``(B, c, *S)``.

        ('valid': skips at least ``S``, output ``S - 4``.)
        """
        up = self.up(below)
        if self._crop:
            size = tuple(up.shape[2:])
            skips = [center_crop(skip, size) for skip in skips]
        return self.conv(torch.cat([up, *skips], dim=1))


class NestedDecoder(nn.Module):
    """UNet++ decoder (Zhou et al. 2018): dense nested skips, node ``x{i}_{j}`` per level i, step j.

    Node ``X(i,j)`` (``1 <= j <= depth``, ``0 <= i <= depth - j``) has ``encoder_channels[i]``
    channels and sees ``X(i+1,j-1)`` upsampled by ``strides[i]`` and all earlier nodes of its
    level; its block uses ``kernel_sizes[i]``.
    With ``padding='valid'`` a node is ``12 * (2**j - 1)`` smaller than ``X(i,0)`` per axis
    (``X(0,depth)`` has the size of U-Net's output); earlier nodes are centre-cropped where they
    meet, and the returned ``X(0,j)`` maps are all cropped to the size of ``X(0,depth)``.

    Attributes:
        out_channels: channels of the returned maps ``X(0,depth), X(0,depth-1), ..., X(0,1)``.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        spatial_dims: int = 2,
        upsample: str = "transpose",
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        strides: Sequence[PerAxis] | None = None,
        kernel_sizes: Sequence[PerAxis] | None = None,
    ) -> None:
        super().__init__()
        chans = list(encoder_channels)
        self._crop = padding == "valid"
        self.depth = len(chans) - 1
        strides, kernels = _defaults(self.depth, strides, kernel_sizes)
        self.out_channels = [chans[0]] * self.depth
        self.nodes = nn.ModuleDict()
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                self.nodes[f"x{i}_{j}"] = NestedNode(
                    chans[i + 1],
                    chans[i],
                    j,
                    spatial_dims=spatial_dims,
                    upsample=upsample,
                    norm=norm,
                    norm_groups=norm_groups,
                    padding=padding,
                    stride=strides[i],
                    kernel_size=kernels[i],
                )

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Skips ``X(i,0)`` -> ``[X(0,depth), X(0,depth-1), ..., X(0,1)]``, all ``(B, c0, *S)``."""
        grid = [[skip] for skip in skips]
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                grid[i].append(self.nodes[f"x{i}_{j}"](grid[i + 1][j - 1], grid[i]))
        outputs = grid[0][:0:-1]
        if self._crop:
            size = tuple(outputs[0].shape[2:])
            outputs = [outputs[0], *(center_crop(o, size) for o in outputs[1:])]
        return outputs
