"""Per-stage table of a model: output shape, parameters, FLOPs and activation memory.

Conventions:

* FLOPs count only convolutions and transposed convolutions, as 2 x multiply-adds (bias adds,
  normalisation, activations, pooling, interpolation and the gates' elementwise ops are left
  out; together they are well under 1 % of the total for these networks). A convolution costs
  ``2 * out_numel * in_channels/groups * prod(kernel)``; a transposed convolution
  ``2 * in_numel * out_channels/groups * prod(kernel)``.
* Activation memory is the size in bytes of each stage's output in fp32 for batch size 1 (for
  the deep-supervision head: all its outputs). The total is the sum of those stage outputs, which
  is what a forward pass keeps for the skips and the decoder; autograd peaks are higher.
* Shapes exclude the batch axis: ``(C, *spatial)``.

The forward pass runs on the ``meta`` device (no memory, no arithmetic), so a summary of a large
3D network is instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
FP32_BYTES = 4


@dataclass(frozen=True)
class StageRow:
    """One row of a model summary (``output_shape`` is ``(C, *spatial)``, batch excluded)."""

    name: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    activation_bytes: int
    detail: str = ""


def conv_flops(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """FLOPs (2 x multiply-adds) of one (transposed) convolution call; 0 for other modules."""
    kernel = math.prod(module.kernel_size) if hasattr(module, "kernel_size") else 0
    if isinstance(module, _CONVS):
        return 2 * output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, _TRANSPOSED):
        return 2 * inputs.numel() * (module.out_channels // module.groups) * kernel
    return 0


def format_shape(shape: Sequence[int]) -> str:
    """``(64, 256, 256)`` -> ``'64×256×256'``."""
    return "×".join(str(s) for s in shape)


def _meta_copy(model: nn.Module) -> nn.Module:
    """The same architecture on the meta device, rebuilt from the model's resolved options."""
    opts = model.options
    with torch.device("meta"):
        copy = type(model)(
            opts.in_channels,
            opts.out_channels,
            spatial_dims=opts.spatial_dims,
            widths=list(opts.widths),
            depth=opts.depth,
            strides=opts.strides,
            kernel_sizes=opts.kernel_sizes,
            norm=opts.norm,
            norm_groups=opts.norm_groups,
            upsample=opts.upsample,
            padding=opts.padding,
            dropout=opts.dropout,
            deep_supervision=model.deep_supervision,
        )
    return copy.eval()


def _input_shape(model: nn.Module, input_size: Sequence[int]) -> tuple[int, ...]:
    size = tuple(int(s) for s in input_size)
    dims = model.spatial_dims
    if len(size) == dims + 1:
        if size[0] != model.in_channels:
            raise ValueError(
                f"input_size {size} has {size[0]} channels, the model takes {model.in_channels}"
            )
        size = size[1:]
    elif len(size) != dims:
        raise ValueError(
            f"input_size {size} must have {dims} spatial entries (or channels + {dims}) "
            f"for a {dims}D model"
        )
    if not model.is_valid_input_size(size):
        raise ValueError(model._size_message(size))
    return (1, model.in_channels, *size)


def model_summary(model: nn.Module, input_size: Sequence[int]) -> list[StageRow]:
    """Rows per stage (enc1, pool1, ..., bottleneck, dec4 ... dec1 or UNet++ nodes, head).

    Args:
        model: a unetkit model (``UNet``, ``ResUNet``, ``AttentionUNet``, ``UNetPlusPlus``).
        input_size: spatial size, e.g. ``(256, 256)``, or ``(C, *spatial)``.

    Returns:
        One ``StageRow`` per stage in execution order; see :func:`summary_totals`.

    Raises:
        ValueError: ``input_size`` has the wrong length/channels or is not accepted.
    """
    shape = _input_shape(model, input_size)
    meta = _meta_copy(model)
    flops: dict[int, int] = {}
    outputs: dict[str, tuple[tuple[int, ...], int]] = {}
    merged: dict[str, tuple[int, ...]] = {}
    handles = []

    def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        flops[id(module)] = flops.get(id(module), 0) + conv_flops(module, args[0], output)

    for module in meta.modules():
        if isinstance(module, _CONVS + _TRANSPOSED):
            handles.append(module.register_forward_hook(count))
    for name, stage in meta.named_stages():
        handles.append(stage.register_forward_hook(_record_output(name, outputs)))
        inner = getattr(stage, "conv", None)
        if isinstance(inner, nn.Module):
            handles.append(inner.register_forward_pre_hook(_record_input(name, merged)))
    try:
        with torch.no_grad():
            meta(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for name, stage in meta.named_stages():
        out_shape, nbytes = outputs[name]
        rows.append(
            StageRow(
                name=name,
                output_shape=out_shape,
                params=sum(p.numel() for p in stage.parameters()),
                flops=sum(flops.get(id(m), 0) for m in stage.modules()),
                activation_bytes=nbytes,
                detail=_detail(name, stage, merged),
            )
        )
    return rows


def _detail(name: str, stage: nn.Module, merged: dict) -> str:
    if name in merged:
        return f"cat {format_shape(merged[name])}"
    aux = getattr(stage, "aux", None)
    if isinstance(aux, nn.ModuleList) and len(aux):
        return f"+{len(aux)} DS heads"
    return ""


def _record_output(name: str, store: dict) -> object:
    def hook(module: nn.Module, args: tuple, output: object) -> None:
        tensors = output if isinstance(output, (list, tuple)) else [output]
        nbytes = sum(t.numel() for t in tensors) * FP32_BYTES
        store[name] = (tuple(tensors[0].shape[1:]), nbytes)

    return hook


def _record_input(name: str, store: dict) -> object:
    def hook(module: nn.Module, args: tuple) -> None:
        store[name] = tuple(args[0].shape[1:])

    return hook


def summary_totals(rows: Sequence[StageRow]) -> StageRow:
    """A ``'total'`` row: summed params, FLOPs and activation bytes; the last row's shape."""
    return StageRow(
        name="total",
        output_shape=rows[-1].output_shape if rows else (),
        params=sum(r.params for r in rows),
        flops=sum(r.flops for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows),
    )


def summary_table(rows: Sequence[StageRow]) -> list[list[str]]:
    """Rows as strings: stage, output shape, params, GFLOPs, activation MB (fp32), detail.

    The last line is the totals row. Used by ``unetkit info``.
    """
    lines = []
    for row in [*rows, summary_totals(rows)]:
        lines.append(
            [
                row.name,
                format_shape(row.output_shape) if row.name != "total" else "",
                f"{row.params:,}",
                f"{row.flops / 1e9:.3f}",
                f"{row.activation_bytes / 2**20:.2f}",
                row.detail,
            ]
        )
    return lines
