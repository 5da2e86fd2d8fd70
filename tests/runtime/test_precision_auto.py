"""``precision: auto`` on GPUs, decided from the compute capability (no GPU needed: the CUDA
queries are monkeypatched, so these run on any machine)."""

from __future__ import annotations

import pytest
import torch

from unetkit.runtime import device as device_module
from unetkit.runtime.device import cuda_has_native_bf16, resolve_precision

CUDA = torch.device("cuda")


@pytest.fixture
def gpu(monkeypatch):
    """``gpu(major, minor, emulated_bf16=True)``: pretend the current GPU has that capability."""

    def pretend(major: int, minor: int = 0, emulated_bf16: bool = True) -> None:
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None:
                            (major, minor))
        # torch's own check also says yes on pre-Ampere GPUs (bf16 emulation)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k:
                            major >= 8 or emulated_bf16)

    return pretend


@pytest.mark.parametrize(("capability", "name"), [
    ((9, 0), "H100/H200"), ((8, 9), "L4/RTX 4090"), ((8, 6), "A10/RTX 3090"), ((8, 0), "A100"),
    ((10, 0), "B200"),
])
def test_ampere_and_later_get_bf16_without_scaler(gpu, capability, name) -> None:
    gpu(*capability)
    plan = resolve_precision("auto", "auto", CUDA)
    assert (plan.name, plan.use_scaler, plan.channels_last) == ("bf16", False, True), name


@pytest.mark.parametrize(("capability", "name"), [
    ((7, 5), "T4"), ((7, 0), "V100"), ((6, 1), "P40"), ((6, 0), "P100"),
])
def test_older_gpus_get_fp16_with_grad_scaler_even_where_bf16_is_emulated(gpu, capability,
                                                                           name) -> None:
    gpu(*capability, emulated_bf16=True)
    plan = resolve_precision("auto", "auto", CUDA)
    assert (plan.name, plan.use_scaler, plan.channels_last) == ("fp16", True, True), name


def test_explicit_choices_on_gpus(gpu) -> None:
    gpu(7, 0, emulated_bf16=True)
    assert resolve_precision("bf16", "auto", CUDA).name == "bf16"  # asked for: emulated
    assert resolve_precision("fp32", "off", CUDA) == device_module.PrecisionPlan(None, False,
                                                                                  False)
    fp16 = resolve_precision("fp16", "auto", CUDA)
    assert fp16.use_scaler and fp16.dtype is torch.float16
    gpu(6, 0, emulated_bf16=False)
    with pytest.raises(ValueError, match="no bf16"):
        resolve_precision("bf16", "auto", CUDA)


def test_rocm_counts_as_native_bf16(monkeypatch) -> None:
    monkeypatch.setattr(torch.version, "hip", "6.0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (0, 0))
    assert cuda_has_native_bf16(CUDA)


def test_the_capability_of_the_given_gpu_is_asked(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: asked.append(device) or (8, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    resolve_precision("auto", "auto", torch.device("cuda", 3))
    assert asked == [torch.device("cuda", 3)]


def test_channels_last_auto_is_on_for_cuda_and_cpu_off_for_mps(gpu) -> None:
    gpu(8, 0)
    assert resolve_precision("auto", "auto", CUDA).channels_last
    assert resolve_precision("fp32", "auto", torch.device("cpu")).channels_last
    assert not resolve_precision("fp32", "auto", torch.device("mps")).channels_last
    assert not resolve_precision("auto", "off", CUDA).channels_last


@pytest.mark.parametrize(("norm", "on_cuda"), [
    ("instance", False), ("group", False), ("batch", True), ("none", True), (None, True)])
def test_channels_last_auto_on_cuda_follows_the_norm(gpu, norm, on_cuda) -> None:
    # PyTorch's CUDA instance/group norm copies a channels-last map to contiguous, forward and
    # backward; batch norm has channels-last kernels. The CPU keeps channels-last for every norm
    # (the planner measures both layouts there), an explicit choice always wins.
    gpu(9, 0)
    assert resolve_precision("auto", "auto", CUDA, norm).channels_last is on_cuda
    assert resolve_precision("fp32", "auto", torch.device("cpu"), norm).channels_last
    assert resolve_precision("auto", "on", CUDA, norm).channels_last
    assert not resolve_precision("auto", "off", CUDA, norm).channels_last
