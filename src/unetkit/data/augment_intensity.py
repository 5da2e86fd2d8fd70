"""Intensity augmentation as pure functions on batches ``(B, C, *spatial)`` with per-sample values.

Parameters are tensors of shape ``(B,)``; statistics (mean, min, max) are per sample and channel.
Intensities are in normalised units (after ``Normalizer``). Parameters are host tensors (as
``Augmenter.draw`` makes them): sizes and kernel radii are read from them without waiting for a
GPU, and their values reach the batch's device by copies that do not wait
(``unetkit.data.transfer``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from unetkit.data.transfer import to_device

_EPS = 1e-7


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, ...)`` broadcastable against ``x``, on its device."""
    return to_device(values, x.device, x.dtype).view(-1, *[1] * (x.ndim - 1))


def gamma(x: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """Gamma on each sample/channel's own ``[min, max]`` range (which is kept): nnU-Net style."""
    dims = tuple(range(2, x.ndim))
    low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    span = high - low
    unit = ((x - low) / (span + _EPS)).clamp(0, 1)
    return unit.pow(_per_sample(gammas, x)) * span + low


def brightness_contrast(x: torch.Tensor, brightness: torch.Tensor,
                        contrast: torch.Tensor) -> torch.Tensor:
    """``(x - mean) * contrast + mean + brightness`` per sample and channel."""
    mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
    return (x - mean) * _per_sample(contrast, x) + mean + _per_sample(brightness, x)


def gaussian_noise(x: torch.Tensor, std: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x + std * noise`` with ``noise`` standard normal of ``x``'s shape."""
    return x + _per_sample(std, x) * to_device(noise, x.device, x.dtype)


def gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, 2 * radius + 1)`` normalised 1-D Gaussian kernels, one per sigma."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weights = torch.exp(-0.5 * (offsets[None] / sigmas.float()[:, None].clamp_min(1e-3)) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (voxels) per sample, edges replicated.

    Each axis is a weighted sum of shifted views (per-sample weights broadcast over the batch):
    for kernels this short it is several times faster on CPU than a grouped convolution.
    """
    batch, channels, *spatial = x.shape
    n = len(spatial)
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    kernels = to_device(gaussian_kernels(sigmas, radius), x.device, x.dtype)
    out = x
    for axis in range(n):
        pad = [0, 0] * n
        pad[2 * (n - 1 - axis)] = pad[2 * (n - 1 - axis) + 1] = radius
        padded = F.pad(out, pad, mode="replicate")
        out = torch.empty_like(x)
        for tap in range(2 * radius + 1):
            view = padded.narrow(2 + axis, tap, spatial[axis])
            weight = kernels[:, tap].view(batch, 1, *[1] * n)
            if tap == 0:
                torch.mul(view, weight, out=out)
            else:
                out.addcmul_(view, weight)
    return out


def low_resolution(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Simulate a coarser acquisition: nearest downsampling by ``scale``, linear upsampling."""
    spatial = x.shape[2:]
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    out = torch.empty_like(x)
    for index, scale in enumerate(scales.tolist()):
        size = [max(1, round(s * scale)) for s in spatial]
        small = F.interpolate(x[index : index + 1], size=size, mode="nearest-exact")
        out[index : index + 1] = F.interpolate(small, size=tuple(spatial), mode=mode,
                                               align_corners=False)
    return out
