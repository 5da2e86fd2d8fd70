"""Norms and pooling that keep a training step lean under mixed precision.

Autograd keeps what each operation saves for backward until the backward pass reaches it, so
those tensors decide a training step's memory. Three things made unetkit's step keep more than
nnU-Net's on the same network (see ``benchmarks/memory_vs_nnunet.py``):

* autocast runs ``group_norm`` in float32 on CUDA (its op list), so an instance norm computed as a
  group norm saved a float32 copy of every convolution output, returned float32, and the next
  convolution cast it back: here every norm runs in its input's dtype (the kernels accumulate
  the statistics in float32 and return the input dtype), with autocast off for the call;
* CPU autocast runs ``max_pool3d`` in float32 (a float32 copy of each pooled map, saved);
* max pooling saves int64 indices of its output (in 2D as many bytes as its bfloat16 input), and
  the next convolution saves the pooled map: ``max_pool`` keeps only its input, which the
  activation before it keeps anyway, and finds the maxima again in backward; ``pool_then`` lets
  the backward recompute the pooled map from that input too (one more pooling pass each).

Shapes are ``(B, C, *spatial)`` with 2 or 3 spatial axes, in either memory layout.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)
_aten = torch.ops.aten


def native_dtype(x: Tensor) -> Any:
    """A context in which operations on ``x`` run in ``x``'s dtype: autocast off for a float16
    or bfloat16 ``x`` (autocast would run norms and pooling in float32), else nothing."""
    available = getattr(torch.amp, "is_autocast_available", lambda kind: True)
    if x.dtype in LOW_PRECISION and available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return nullcontext()


def instance_norm(x: Tensor, channels: int, weight: Tensor | None, bias: Tensor | None,
                  eps: float) -> Tensor:
    """Instance norm (statistics per sample and channel over the spatial axes) in ``x``'s dtype.

    On CUDA, ``torch.instance_norm`` (cuDNN or the native batch-norm kernel, as nnU-Net runs it:
    float32 weights with a half-precision input are supported, the output has ``x``'s dtype and
    layout contiguous). Elsewhere a group norm with one group per channel, the same formula,
    which keeps a channels-last input channels-last (a 3D U-Net step on 2 CPU cores: 1.80 ->
    1.59 s). ``(B, C, *S) -> (B, C, *S)`` with ``C == channels`` (a Python int, so that an
    ONNX trace sees a constant group count).
    """
    with native_dtype(x):
        if x.device.type == "cuda":  # (torch's op: F.instance_norm refuses 1-voxel maps)
            return torch.instance_norm(x, weight, bias, None, None, True, 0.0, eps,
                                       torch.backends.cudnn.enabled)
        return F.group_norm(x, channels, weight, bias, eps)


def group_norm(
    x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float
) -> Tensor:
    """``F.group_norm`` in ``x``'s dtype: ``(B, C, *S) -> (B, C, *S)``.

    CUDA's group-norm kernel takes weights of the input's dtype only, so there they are cast
    (autograd casts their gradients back to float32); the CPU kernel takes float32 weights.
    """
    with native_dtype(x):
        if x.device.type == "cuda" and weight is not None and weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
            bias = None if bias is None else bias.to(x.dtype)
        return F.group_norm(x, groups, weight, bias, eps)


def _tracing() -> bool:
    """Inside ``torch.compile``, ``torch.export`` or a TorchScript/ONNX trace: plain ops only."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _window_views(x: Tensor, kernel: list[int]) -> list[tuple[slice, ...]]:
    """Index tuples of the ``prod(kernel)`` strided views of ``x`` that tile its pooling
    windows, in the order of the window's flat index (the order ties are broken in)."""
    sizes = [s // k for s, k in zip(x.shape[2:], kernel, strict=True)]
    return [(slice(None), slice(None), *(slice(o, o + k * n, k)
                                         for o, k, n in zip(offsets, kernel, sizes, strict=True)))
            for offsets in itertools.product(*(range(k) for k in kernel))]


def _pool(x: Tensor, kernel: list[int]) -> Tensor:
    """Max pooling with kernel = stride, no indices. For a contiguous map on the CPU the maximum
    of the strided views of the windows, the same values 2-5x faster than torch's contiguous CPU
    kernel (bf16, 2D and 3D, one thread); elsewhere torch's kernel."""
    if x.device.type != "cpu" or not x.is_contiguous() or _tracing():
        return (F.max_pool3d if len(kernel) == 3 else F.max_pool2d)(x, kernel, kernel)
    views = _window_views(x, kernel)
    out = x[views[0]].clone()
    for view in views[1:]:
        torch.maximum(out, x[view], out=out)
    return out


def _grad_from_indices(x: Tensor, grad: Tensor, kernel: list[int]) -> Tensor:
    """Max-pooling gradient from torch's indices, recomputed (one pooling pass): each window's
    gradient to its first maximum. Torch's CPU kernels are several times faster channels-last,
    so a contiguous CPU map is converted there and back (still faster than the contiguous
    kernels: 2D 32x16x64x56 bf16, 3.8 against 10.1 ms for the old forward + backward)."""
    three = len(kernel) == 3
    forward = _aten.max_pool3d_with_indices if three else _aten.max_pool2d_with_indices
    backward = (_aten.max_pool3d_with_indices_backward if three
                else _aten.max_pool2d_with_indices_backward)
    layout = None
    if x.device.type == "cpu" and x.is_contiguous():
        layout = torch.channels_last_3d if three else torch.channels_last
        x, grad = x.contiguous(memory_format=layout), grad.contiguous(memory_format=layout)
    _, indices = forward(x, kernel, kernel)
    zero, one = [0] * len(kernel), [1] * len(kernel)
    result = backward(grad, x, kernel, kernel, zero, one, False, indices)
    return result if layout is None else result.contiguous()


class _MaxPool(torch.autograd.Function):
    """Max pooling with kernel = stride that saves its input only (no int64 indices)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel: list[int]) -> Tensor:
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        return _pool(x, kernel)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return _grad_from_indices(x, grad, ctx.kernel), None


def max_pool(x: Tensor, kernel: int | Sequence[int]) -> Tensor:
    """Max pooling with kernel = stride, in ``x``'s dtype: ``(B, C, *S) -> (B, C, *(S // k))``.

    With autograd recording, only ``x`` is saved (the gradient is the same as ``F.max_pool``'s:
    each window's to its first maximum, found again in backward).
    """
    dims = x.ndim - 2
    size = [int(kernel)] * dims if isinstance(kernel, int) else [int(k) for k in kernel]
    with native_dtype(x):
        if torch.is_grad_enabled() and x.requires_grad and not _tracing():
            return _MaxPool.apply(x, size)
        return _pool(x, size)


class _Recompute:
    """What a saved view of the pooled map is replaced by: its source and its view geometry."""

    def __init__(self, source: Tensor, pool: Any, view: Tensor) -> None:
        self.source, self.pool = source, pool
        self.size, self.stride, self.offset = view.size(), view.stride(), view.storage_offset()

    def tensor(self) -> Tensor:
        with torch.no_grad():
            pooled = self.pool(self.source)
        return pooled.as_strided(self.size, self.stride, self.offset)


def _outer_hooks() -> tuple[Any, Any] | None:
    """The saved-tensor hooks active around this call (a memory probe's, a checkpoint's)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return None if top is None else top(False)


def pool_then(block: Any, pool: Any, x: Tensor) -> Tensor:
    """``block(pool(x))`` without keeping the pooled map for backward.

    The pooled map is what the block's first convolution saves; autograd keeps ``x`` anyway
    (the activation before the pooling saves it), so the backward recomputes the pooling from
    ``x`` (one more pooling pass) instead of keeping a second map per level. Other saved
    tensors pass through, to the hooks active around this call if there are any. Under
    ``torch.compile`` (which chooses what to keep itself) or without autograd: the plain
    ``block(pool(x))``. ``x``: ``(B, C, *S)``; returns the block's output.
    """
    if _tracing() or not (torch.is_grad_enabled() and x.requires_grad):
        return block(pool(x))
    pooled = pool(x)
    # the hooks may outlive this call: they hold the pooled map's address, never the map
    storage, dtype = pooled.untyped_storage().data_ptr(), pooled.dtype
    source = x.detach()
    outer = _outer_hooks()

    def pack(tensor: Tensor) -> Any:
        if tensor.untyped_storage().data_ptr() == storage and tensor.dtype == dtype:
            return _Recompute(source, pool, tensor)
        return tensor.detach() if outer is None else outer[0](tensor)

    def unpack(packed: Any) -> Tensor:
        if isinstance(packed, _Recompute):
            return packed.tensor()
        return packed if outer is None else outer[1](packed)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return block(pooled)
