"""Device, precision and memory-format choices for training.

``precision="auto"`` picks what is fastest without hurting accuracy:

- CUDA: bf16 autocast on GPUs with native bf16 (compute capability 8.0 and up: Ampere, Ada,
  Hopper, Blackwell; and ROCm), else fp16 autocast with a ``GradScaler``. Older GPUs can
  *emulate* bf16 (``torch.cuda.is_bf16_supported()`` is true there), but slowly: ``auto`` asks
  for the capability (``cuda_has_native_bf16``), an explicit ``bf16`` is still honoured.
- CPU with fast bf16 (Intel AMX or AVX512-BF16; detected with ``torch.cpu._is_amx_tile_supported``
  / ``_is_avx512_bf16_supported`` where torch has them, else from the ``amx_bf16`` /
  ``avx512_bf16`` flags of ``/proc/cpuinfo``): bf16 autocast. Elsewhere fp32.
- MPS: fp32 (autocast support there is partial).

``channels_last="auto"`` (``channels_last_auto``): on for the CPU (convolutions run faster in
NHWC there; a planned run measures both layouts and writes the faster one), off on MPS, and on
CUDA on unless the network has instance or group norm: PyTorch's CUDA instance- and group-norm
kernels take contiguous maps only and copy a channels-last one, forward and backward (pytorch
issues #67976, #72341, #59168), so those networks run contiguous there; batch norm has
channels-last CUDA kernels and is fastest channels-last. Losses compute in float32 from the
logits as the network returns them.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: where ``cpu_flags`` reads the CPU's feature flags (Linux)
CPUINFO = Path("/proc/cpuinfo")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of this CPU (``CPUINFO``'s ``flags`` line; empty where there is none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix maths natively (AMX or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def cuda_has_native_bf16(device: torch.device | None = None) -> bool:
    """True when the GPU ``device`` computes in bf16 natively (compute capability >= 8.0)."""
    if torch.version.hip:  # every ROCm architecture torch supports has bf16
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else MPS, else CPU; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"train.device: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    unavailable = (device.type == "cuda" and not torch.cuda.is_available()) or (
        device.type == "mps" and not torch.backends.mps.is_available()
    )
    if unavailable:
        raise ValueError(
            f"train.device: {name!r} requested but {device.type} is not available; use auto or cpu"
        )
    return device


@dataclass(frozen=True)
class PrecisionPlan:
    """Resolved precision: the autocast dtype (None = fp32), GradScaler use and memory format."""

    dtype: torch.dtype | None
    use_scaler: bool
    channels_last: bool

    @property
    def name(self) -> str:
        """``'bf16'``, ``'fp16'`` or ``'fp32'``."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]


CONTIGUOUS_NORMS_ON_CUDA = ("instance", "group")


def channels_last_auto(device: torch.device, norm: str | None = None) -> bool:
    """What ``channels_last: auto`` means on ``device`` for a network with ``norm`` (the
    model's ``norm``; None when unknown): see the module docstring."""
    if device.type == "cuda":
        return norm not in CONTIGUOUS_NORMS_ON_CUDA
    return device.type == "cpu"


def resolve_precision(precision: str, channels_last: str, device: torch.device,
                      norm: str | None = None) -> PrecisionPlan:
    """Turn the config's ``precision`` / ``channels_last`` strings into a ``PrecisionPlan``
    (``norm``: the model's, for ``channels_last: auto``; see ``channels_last_auto``).

    Raises:
        ValueError: fp16 requested on CPU/MPS (too slow and unstable there) or bf16 on a GPU
            without bf16.
    """
    kind = device.type
    if precision == "auto":
        if kind == "cuda":
            precision = "bf16" if cuda_has_native_bf16(device) else "fp16"
        elif kind == "cpu" and cpu_has_fast_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "fp16" and kind != "cuda":
        raise ValueError(f"train.precision: fp16 needs CUDA (device is {kind}); use bf16 or fp32")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision: this GPU has no bf16; use fp16 or fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    use_cl = channels_last_auto(device, norm) if channels_last == "auto" \
        else channels_last == "on"
    return PrecisionPlan(dtype=dtype, use_scaler=precision == "fp16", channels_last=use_cl)


def autocast(plan: PrecisionPlan, device: torch.device) -> Any:
    """The autocast context for ``plan`` (a no-op context in fp32)."""
    if plan.dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=plan.dtype)


def to_memory_format(tensor: torch.Tensor, plan: PrecisionPlan) -> torch.Tensor:
    """``tensor`` in channels-last layout when the plan asks for it (4-D and 5-D tensors)."""
    if not plan.channels_last:
        return tensor
    if tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    if tensor.dim() == 5:
        return tensor.contiguous(memory_format=torch.channels_last_3d)
    return tensor


def model_to_memory_format(model: torch.nn.Module, plan: PrecisionPlan, spatial_dims: int) -> None:
    """Convert a model's parameters to channels-last in place when the plan asks for it."""
    if plan.channels_last:
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        model.to(memory_format=fmt)
