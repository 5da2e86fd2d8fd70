"""Which engine runs a checkpoint's network (``infer.engine``), and that network.

``torch`` runs the module (BatchNorm folded, channels-last, bf16 autocast where the precision
plan says so; ``runtime.network``); ``onnxruntime`` runs the checkpoint's verified, cached ONNX
export (``runtime.onnx_cache``) in fp32. ``auto`` measures nothing at run time; it applies a
fixed rule, and today that rule always gives torch:

* not a CPU (CUDA, MPS): torch.
* a bf16 precision plan (CPUs with AMX or AVX512-BF16, ``precision: auto``): torch, whose bf16
  autocast halves the memory traffic that onnxruntime's fp32 kernels pay in full.
* fp32 on a CPU: the entry of ``FASTER_FP32`` for this CPU kind (``cpu_kind``), a table written
  by hand from ``benchmarks/bench_infer.py --part engines`` runs (figures in
  ``docs/inference.md``). It holds one entry, ``avx2: torch``; a kind without an entry gets
  torch, the engine that needs no export.

Any failure on the onnxruntime path (package missing, export error, verification mismatch,
cache folder not writable) falls back to torch with the reason logged as a warning; the name
``engine_network`` returns (``Predictor.engine``) is the engine that actually runs.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from unetkit.runtime.device import PrecisionPlan, cpu_flags, cpu_has_fast_bf16
from unetkit.runtime.network import Network, fuse_conv_bn, torch_network

log = logging.getLogger(__name__)

FP32 = PrecisionPlan(dtype=None, use_scaler=False, channels_last=False)

#: per CPU kind, the fp32 engine ``auto`` picks. "avx2": measured on a 2-core AMD EPYC (30 Nov
#: 2026, ``benchmarks/bench_infer.py --part engines --cases 2:1024,3:96``, default network):
#: onnxruntime 1.43x torch channels-last at 1024^2, 1.02x at 96^3, outputs within 5e-8. torch
#: stays the choice: validation runs the torch network, so only torch keeps validation Dice
#: exactly the Dice of ``unetkit predict``, and onnxruntime's peak memory at 4096^2 overshot
#: ``infer.memory_budget_mb`` by up to 19% where torch stayed under it;
#: ``infer.engine: onnxruntime`` opts in (docs/inference.md). AVX512 kinds are not listed until
#: measured on this code.
FASTER_FP32 = {"avx2": "torch"}


@dataclass(frozen=True)
class EngineChoice:
    """The engine that will run the network and why."""

    name: str
    reason: str


@functools.lru_cache(maxsize=1)
def cpu_kind() -> str:
    """``amx``, ``avx512_bf16``, ``avx512``, ``avx2`` or ``other`` (this CPU's vector unit);
    the bf16 kinds exactly where ``precision: auto`` picks bf16 (``cpu_has_fast_bf16``)."""
    if cpu_has_fast_bf16():
        return "amx" if "amx_bf16" in cpu_flags() else "avx512_bf16"
    capability = torch.backends.cpu.get_cpu_capability().lower()
    return capability if capability in ("avx512", "avx2") else "other"


def onnxruntime_installed() -> bool:
    """True when ``onnx`` and ``onnxruntime`` can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(requested: str, device: torch.device, plan: PrecisionPlan) -> EngineChoice:
    """Resolve ``infer.engine`` (``auto``, ``torch`` or ``onnxruntime``) for ``device``."""
    if requested == "torch":
        return EngineChoice("torch", "infer.engine is torch")
    if device.type != "cpu":
        return EngineChoice("torch", f"onnxruntime runs on the CPU only; the device is "
                            f"{device.type}")
    if requested == "onnxruntime":
        return EngineChoice("onnxruntime", "infer.engine is onnxruntime")
    if requested != "auto":
        raise ValueError(f"infer.engine must be auto, torch or onnxruntime, got {requested!r}")
    kind = cpu_kind()
    if plan.dtype is not None:
        return EngineChoice("torch", f"{plan.name} autocast on this {kind} CPU")
    listed = FASTER_FP32.get(kind)
    if listed is None:
        return EngineChoice("torch", f"no engine measurement for {kind} CPUs")
    if listed == "onnxruntime" and not onnxruntime_installed():
        return EngineChoice("torch", "onnxruntime is listed for this CPU kind but not installed "
                            "(pip install 'unetkit[onnx]')")
    return EngineChoice(listed, f"the fp32 engine listed for {kind} CPUs (FASTER_FP32)")


def engine_network(checkpoint: str | Path, model: torch.nn.Module, *, requested: str,
                   plan: PrecisionPlan, device: torch.device
                   ) -> tuple[Network, PrecisionPlan, str]:
    """``(network, plan, engine name)`` of a checkpoint's ``model`` under ``infer.engine``.

    Args:
        checkpoint: the file (or run folder) ``model`` was loaded from (the ONNX cache key).
        model: the checkpoint's network, unfused.
        requested: ``infer.engine``.
        plan: the precision plan for torch (onnxruntime runs fp32).
        device: where torch runs the network.
    """
    choice = choose_engine(requested, device, plan)
    if choice.name == "onnxruntime":
        from unetkit.runtime.onnx import onnx_network
        from unetkit.runtime.onnx_cache import cached_onnx

        try:
            path = cached_onnx(checkpoint, model, spatial_dims=getattr(model, "spatial_dims", 2),
                               in_channels=getattr(model, "in_channels", 1))
            network = onnx_network(path)
        except (ImportError, OSError, RuntimeError, ValueError) as error:
            log.warning("infer.engine %s: onnxruntime is not usable (%s: %s); running torch",
                        requested, type(error).__name__, str(error).strip()[:300])
        else:
            if plan.dtype is not None:
                log.info("engine: onnxruntime runs fp32 (precision %s ignored)", plan.name)
            log.info("engine: onnxruntime (%s)", choice.reason)
            return network, FP32, "onnxruntime"
        choice = EngineChoice("torch", "fallback")
    log.info("engine: torch (%s)", choice.reason)
    return torch_network(fuse_conv_bn(model), plan, device), plan, "torch"
