"""The U-Net family: thin encoder + decoder + heads, all with the same keyword options.

Every model maps ``(B, in_channels, *S)`` to ``(B, out_channels, *S_out)`` with ``S_out = S`` for
``padding='same'`` (each axis of S a multiple of the product of its strides, ``2**depth`` by
default) and ``S_out = model.output_size(S)`` for ``'valid'``. Deep-supervision heads are built
when the flag is first switched on (so the default ``UNet()`` has exactly the textbook
parameters), and state dicts load whether the flag is on or off: auxiliary-head weights in a
checkpoint build the heads, missing ones keep their initialisation.
``deep_supervision`` only decides whether ``forward`` returns the list of all outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetkit.nn import layers
from unetkit.nn.decoders import NestedDecoder, UNetDecoder
from unetkit.nn.encoder import Encoder
from unetkit.nn.options import Options, resolve_options
from unetkit.nn.sizes import SizeMixin


class Heads(nn.Module):
    """1x1 convolutions: ``main`` on the first decoder map, ``aux[k]`` on map ``k + 1``.

    The auxiliary heads exist only once ``build_aux()`` ran (deep supervision switched on, or a
    state dict that holds them loaded); a state dict without them loads into a model with them.
    """

    def __init__(self, channels: Sequence[int], out_channels: int, spatial_dims: int) -> None:
        super().__init__()
        self._channels, self._out, self._dims = list(channels), out_channels, spatial_dims
        self.main = layers.conv(spatial_dims, channels[0], out_channels, 1)
        self.aux = nn.ModuleList()

    def build_aux(self) -> None:
        """Create the auxiliary heads (on the main head's device and dtype) if missing."""
        if len(self.aux) or len(self._channels) < 2:
            return
        weight = self.main.weight
        self.aux.extend(
            layers.conv(self._dims, c, self._out, 1).to(weight.device, weight.dtype)
            for c in self._channels[1:]
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args) -> None:
        aux_prefix = prefix + "aux."
        if any(key.startswith(aux_prefix) for key in state_dict):
            self.build_aux()
        elif len(self.aux):  # checkpoint without heads: keep ours, so strict loading passes
            for key, value in self.aux.state_dict(prefix=aux_prefix).items():
                state_dict[key] = value
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)

    def forward(
        self, features: list[torch.Tensor], deep_supervision: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Maps ``[(B, c_k, *S_k)]`` -> ``(B, out, *S_0)``, or the list of every head's output."""
        main = self.main(features[0])
        if not deep_supervision:
            return main
        return [main, *(head(f) for head, f in zip(self.aux, features[1:], strict=True))]


class _SegmentationNet(SizeMixin, nn.Module):
    """Shared constructor and forward; subclasses choose the block, gates and decoder."""

    _block = "double"
    _attention = False

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        spatial_dims: int = 2,
        base_width: int = 64,
        widths: Sequence[int] | None = None,
        depth: int = 4,
        strides: Sequence[int | Sequence[int]] | None = None,
        kernel_sizes: Sequence[int | Sequence[int]] | None = None,
        norm: str = "none",
        upsample: str = "transpose",
        padding: str = "same",
        dropout: float = 0.0,
        norm_groups: int = 8,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        opts = resolve_options(
            in_channels=in_channels,
            out_channels=out_channels,
            spatial_dims=spatial_dims,
            base_width=base_width,
            widths=widths,
            depth=depth,
            norm=norm,
            norm_groups=norm_groups,
            upsample=upsample,
            padding=padding,
            dropout=dropout,
            strides=strides,
            kernel_sizes=kernel_sizes,
        )
        self.options = opts
        self.in_channels, self.out_channels = opts.in_channels, opts.out_channels
        self.spatial_dims, self.depth, self.padding = opts.spatial_dims, opts.depth, opts.padding
        self.widths, self.strides, self.kernel_sizes = opts.widths, opts.strides, opts.kernel_sizes
        self.encoder = Encoder(
            opts.in_channels,
            opts.widths,
            spatial_dims=opts.spatial_dims,
            block=self._block,
            norm=opts.norm,
            norm_groups=opts.norm_groups,
            padding=opts.padding,
            dropout=opts.dropout,
            strides=opts.strides,
            kernel_sizes=opts.kernel_sizes,
        )
        self.decoder = self._build_decoder(opts)
        self.head = Heads(self.decoder.out_channels, opts.out_channels, opts.spatial_dims)
        self.deep_supervision = bool(deep_supervision)

    @property
    def deep_supervision(self) -> bool:
        """Whether ``forward`` returns every head's output (full resolution first)."""
        return self._deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, value: bool) -> None:
        self._deep_supervision = bool(value)
        if value:
            self.head.build_aux()

    def _build_decoder(self, opts: Options) -> nn.Module:
        return UNetDecoder(
            opts.widths,
            spatial_dims=opts.spatial_dims,
            block=self._block,
            upsample=opts.upsample,
            attention=self._attention,
            norm=opts.norm,
            norm_groups=opts.norm_groups,
            padding=opts.padding,
            strides=opts.strides,
            kernel_sizes=opts.kernel_sizes,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``(B, in_channels, *S) -> (B, out_channels, *S_out)``, or a list if deep supervision.

        Raises:
            ValueError: ``x`` has the wrong number of axes/channels or a size the model cannot
                take; the message names the nearest accepted sizes.
        """
        self._check_input(x)
        return self.head(self.decoder(self.encoder(x)), self.deep_supervision)

    def named_stages(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` per stage, in execution order (enc1, pool1, ..., head)."""
        rows: list[tuple[str, nn.Module]] = []
        for i, pool in enumerate(self.encoder.pools):
            rows += [(f"enc{i + 1}", self.encoder.blocks[i]), (f"pool{i + 1}", pool)]
        rows.append(("bottleneck", self.encoder.blocks[-1]))
        if isinstance(self.decoder, NestedDecoder):
            rows += list(self.decoder.nodes.items())
        else:
            rows += [(f"dec{self.depth - k}", s) for k, s in enumerate(self.decoder.stages)]
        rows.append(("head", self.head))
        return rows


class UNet(_SegmentationNet):
    """U-Net (Ronneberger et al. 2015): DoubleConv encoder, transposed-conv decoder, 1x1 head.

    Defaults reproduce the textbook network exactly: widths 64-128-256-512-1024, 3x3 convs with
    bias and ReLU, 2x2 max-pool, ConvTranspose(k=2, s=2), concat [up, skip], no normalisation.

    Args:
        in_channels: image channels.
        out_channels: output channels (classes; 1 for binary with a sigmoid).
        spatial_dims: 2 or 3.
        base_width: channels of the first stage; stage i has ``base_width * 2**i``.
        widths: explicit channels per stage (``depth + 1`` entries); overrides ``base_width``.
        depth: number of poolings, 1..6.
        strides: pooling factor per level (``depth`` entries, level 1 first), each an int or one
            value per spatial axis, 1 or 2 (1: no pooling along that axis, e.g. the thick axis of
            anisotropic 3D data). None: 2 on every axis. The decoder and attention gates upsample
            by the same factors.
        kernel_sizes: convolution kernel per encoder stage (``depth + 1`` entries, bottleneck
            last), an int or one value per axis, 1 or 3; decoder stages use the kernel of their
            encoder stage. None: 3 on every axis. Anything but the defaults needs
            ``padding='same'``.
        norm: ``'none'`` | ``'batch'`` | ``'instance'`` | ``'group'`` (convs lose their bias).
        upsample: ``'transpose'`` or ``'interpolate'`` (1x1 conv + bi/trilinear).
        padding: ``'same'`` (output size = input size) or ``'valid'`` (unpadded convs,
            centre-cropped skips; 572 -> 388 at depth 4).
        dropout: channel-dropout probability after the deepest encoder block and the bottleneck.
        norm_groups: groups for ``norm='group'`` (must divide every width).
        deep_supervision: ``forward`` returns ``[full, 1/2, 1/4, ...]`` (``depth`` tensors).
    """


class ResUNet(_SegmentationNet):
    """U-Net with residual blocks (1x1 projection shortcuts) in place of DoubleConv.

    Options as :class:`UNet`.
    """

    _block = "residual"


class AttentionUNet(_SegmentationNet):
    """Attention U-Net (Oktay et al. 2018): every skip is reweighted by an additive gate driven by
    the coarser decoder feature before it is concatenated. Options as :class:`UNet`.
    """

    _attention = True


class UNetPlusPlus(_SegmentationNet):
    """UNet++ (Zhou et al. 2018): nested dense skips ``X(i,j)`` between encoder and decoder.

    Options as :class:`UNet`; accepted sizes and output sizes are U-Net's. With deep
    supervision ``forward`` returns the heads on ``X(0,depth), X(0,depth-1), ..., X(0,1)``, all at
    full resolution (for 'valid' padding centre-cropped to the size of the main output).
    """

    def _build_decoder(self, opts: Options) -> nn.Module:
        return NestedDecoder(
            opts.widths,
            spatial_dims=opts.spatial_dims,
            upsample=opts.upsample,
            norm=opts.norm,
            norm_groups=opts.norm_groups,
            padding=opts.padding,
            strides=opts.strides,
            kernel_sizes=opts.kernel_sizes,
        )
