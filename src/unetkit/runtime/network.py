"""A trained module as a fast inference callable (``Network``), whatever runs it.

A ``Network`` maps a window batch ``(n, C_in, *S)`` to float32 logits ``(n, C_out, *S)`` on the
input's device; inference code (``unetkit.infer``) sees nothing else, so PyTorch and onnxruntime
(``unetkit.runtime.onnx``) are interchangeable behind it.

* ``fuse_conv_bn`` folds every eval-mode BatchNorm that directly follows a convolution inside a
  ``nn.Sequential`` into the convolution's weights (one op instead of two; same result).
* ``torch_network`` wraps the module with the precision plan: autocast (bf16 on CPUs with native
  bf16 maths, see ``unetkit.runtime.device``) and channels-last inputs; outputs are float32, so
  every probability computation after the network runs in float32.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from unetkit.runtime.device import PrecisionPlan, autocast, to_memory_format

Network = Callable[[torch.Tensor], torch.Tensor]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: layers whose inputs autocast casts to its lower precision on CPU and CUDA alike
_AUTOCAST_CONVS = (*_CONVS, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _fold(conv: nn.Module, norm: nn.Module) -> nn.Module:
    """A copy of ``conv`` whose output equals ``norm(conv(x))`` for an eval-mode ``norm``."""
    fused = copy.deepcopy(conv)
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.reshape(shape))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(norm.running_mean)
    fused.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias.detach())
    return fused


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Copy of ``model`` (eval mode) with each Conv -> BatchNorm pair of a Sequential folded."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = module._modules[first], module._modules[second]
            if (isinstance(conv, _CONVS) and isinstance(norm, _NORMS) and norm.affine
                    and norm.track_running_stats and conv.groups == 1):
                module._modules[first] = _fold(conv, norm)
                module._modules[second] = nn.Identity()
    return model


def torch_network(model: nn.Module, plan: PrecisionPlan, device: torch.device) -> Network:
    """``model`` as a callable ``(n, C_in, *S) -> (n, C_out, *S)`` float32 under ``plan``.

    The model is put in eval mode with deep supervision off (only the full-resolution output);
    its parameters are converted to channels-last when the plan asks for it. Under autocast the
    convolutions' weights and biases are stored in the autocast dtype: autocast would cast them
    to it at every call (the same values: the outputs do not change), a copy of each layer's
    weights per window, which the memory estimate of ``unetkit.infer.tiling`` does not count.
    """
    model = model.eval().to(device)
    if hasattr(model, "deep_supervision"):
        model.deep_supervision = False
    layout = torch.contiguous_format
    if plan.channels_last:
        layout = torch.channels_last if getattr(model, "spatial_dims", 2) == 2 \
            else torch.channels_last_3d
    model = model.to(memory_format=layout)
    if plan.dtype is not None:
        for module in model.modules():
            if isinstance(module, _AUTOCAST_CONVS):
                module.to(plan.dtype)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(plan, device):
            out = model(to_memory_format(x.to(device), plan))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.to(torch.float32, memory_format=torch.contiguous_format)

    return run


def output_differences(reference: Callable[[torch.Tensor], torch.Tensor],
                       other: Callable[[torch.Tensor], torch.Tensor],
                       sizes: Sequence[Sequence[int]], in_channels: int, seed: int = 0
                       ) -> dict[tuple[int, ...], float]:
    """Largest absolute output difference of ``other`` against ``reference`` per spatial size,
    on random inputs ``(2, in_channels, *size)`` (an exported or cached network checked against
    the PyTorch model it came from).

    Raises:
        ValueError: an output shape differs from the reference's (names both shapes).
    """
    generator = torch.Generator().manual_seed(seed)
    diffs = {}
    for size in sizes:
        x = torch.randn(2, in_channels, *size, generator=generator)
        with torch.inference_mode():
            expected = reference(x)
            got = other(x)
        if tuple(got.shape) != tuple(expected.shape):
            raise ValueError(f"output shape {tuple(got.shape)} for input {tuple(x.shape)} "
                             f"differs from PyTorch's {tuple(expected.shape)}")
        diffs[tuple(size)] = float((got.float() - expected.float()).abs().max())
    return diffs
