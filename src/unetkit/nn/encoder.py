"""The contracting path: ``depth + 1`` blocks with a max-pool before all but the first."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetkit.nn import functional, layers
from unetkit.nn.blocks import PerAxis, make_block


class Encoder(nn.Module):
    """Blocks at decreasing resolution; returns every block's output (the skips).

    Dropout (if any) is applied at the end of the two deepest blocks, the last encoder stage and
    the bottleneck, as in Ronneberger et al. 2015 ("drop-out layers at the end of the contracting
    path"); shallower blocks never drop.

    Args:
        in_channels: image channels.
        widths: channels per stage, bottleneck last (``depth + 1`` entries).
        spatial_dims: 2 or 3.
        block: ``'double'`` (DoubleConv) or ``'residual'`` (ResidualBlock).
        norm, norm_groups, padding, dropout: passed to the blocks (see ``unetkit.nn.blocks``).
        strides: pooling factor per level (``depth`` entries), an int or one per axis; None: 2.
        kernel_sizes: convolution kernel per stage (``depth + 1`` entries); None: 3.

    Attributes:
        out_channels: ``list(widths)``, one entry per returned skip.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        *,
        spatial_dims: int = 2,
        block: str = "double",
        norm: str = "none",
        norm_groups: int = 8,
        padding: str = "same",
        dropout: float = 0.0,
        strides: Sequence[PerAxis] | None = None,
        kernel_sizes: Sequence[PerAxis] | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = list(widths)
        chans = [in_channels, *widths]
        deepest = len(widths) - 2
        strides = strides if strides is not None else [2] * (len(widths) - 1)
        kernels = kernel_sizes if kernel_sizes is not None else [3] * len(widths)
        self.blocks = nn.ModuleList(
            make_block(
                block,
                chans[i],
                chans[i + 1],
                spatial_dims=spatial_dims,
                norm=norm,
                norm_groups=norm_groups,
                padding=padding,
                dropout=dropout if i >= deepest else 0.0,
                kernel_size=kernels[i],
            )
            for i in range(len(widths))
        )
        # One pool module per level (they hold no weights) so a summary can hook each level.
        self.pools = nn.ModuleList(layers.max_pool(spatial_dims, s) for s in strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, in, *S)`` -> skips ``[(B, widths[0], *S), (B, widths[1], *S/2), ...]``.

        Level ``i + 1`` is level ``i`` divided by ``strides[i]`` per axis (2 by default). The last
        entry is the bottleneck output (for 'valid' padding every level is smaller by the trimmed
        borders).
        """
        skips = [self.blocks[0](x)]
        for pool, block in zip(self.pools, self.blocks[1:], strict=True):
            # block(pool(skip)), the pooled map recomputed in backward rather than kept
            skips.append(functional.pool_then(block, pool, skips[-1]))
        return skips
