"""The lean training step on CUDA (marker ``gpu``; skipped without CUDA).

CUDA's autocast runs ``group_norm`` in float32, which the CPU cannot show: here the norms must
return the autocast dtype and keep no float32 map for backward, the pooling must match torch's
on the device, the fused loss must match the compound one, the layout must follow the norm,
and a whole training step must keep at most what nnU-Net v2's keeps (bf16 vs nnU-Net's fp16).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unetkit.config import LossConfig
from unetkit.losses import CompoundLoss, build_loss
from unetkit.nn import functional as lean
from unetkit.nn import layers

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(GPUS == 0, reason="no CUDA device: GPU checks skipped")]
CUDA = torch.device("cuda")
LAYOUTS = {2: torch.channels_last, 3: torch.channels_last_3d}
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _low_precision() -> list[torch.dtype]:
    native_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(
        including_emulation=False)
    return [torch.float16, torch.bfloat16] if native_bf16 else [torch.float16]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("name", "dims"), [("instance", 3), ("instance", 2), ("group", 3),
                                            ("batch", 3)])
def test_norms_keep_the_autocast_dtype_and_no_float32_map_on_cuda(name, dims, dtype):
    from memory_vs_nnunet import saved_bytes

    if dtype not in _low_precision():
        pytest.skip("this GPU has no native bf16")
    torch.manual_seed(0)
    norm = layers.norm(name, dims, 16, groups=4).to(CUDA)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    conv = layers.conv(dims, 4, 16, 3, padding=1, bias=False).to(CUDA)
    x = torch.randn(2, 4, *(12, 10, 8)[:dims], device=CUDA)
    with torch.autocast("cuda", dtype=dtype):
        kept = saved_bytes(lambda: norm(conv(x)), [*norm.parameters(), *conv.parameters()])
        out = norm(conv(x))
    assert out.dtype == dtype
    # the convolution's low-precision output (and input, weight cast), statistics; no float32 map
    assert kept.by_dtype.get("float32", 0) < 4 * 2 * 16 * 4
    with torch.no_grad():
        reference = norm.float()(conv(x))
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.03)
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in norm.parameters())


@pytest.mark.parametrize(("shape", "kernel", "channels_last"), [
    ((2, 8, 16, 18), [2, 2], False), ((2, 8, 16, 18), [2, 2], True),
    ((2, 8, 6, 16, 18), [1, 2, 2], False), ((2, 8, 8, 10, 12), [2, 2, 2], True)])
def test_the_lean_max_pool_is_torchs_on_cuda(shape, kernel, channels_last):
    x = torch.randint(-3, 4, shape, device=CUDA).to(torch.bfloat16)  # ties on purpose
    if channels_last:
        x = x.contiguous(memory_format=LAYOUTS[len(kernel)])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = lean.max_pool(a, kernel)
    reference = (F.max_pool3d if len(kernel) == 3 else F.max_pool2d)(b, kernel, kernel)
    assert torch.equal(ours, reference)
    gradient = torch.randn_like(reference)
    ours.backward(gradient), reference.backward(gradient)
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_fused_loss_on_cuda_is_the_compound_loss(channels):
    torch.manual_seed(0)
    labels = torch.randint(0, max(channels, 2), (2, 16, 12, 8), device=CUDA)
    labels[:, :2] = 255
    loss = build_loss(LossConfig(ignore_index=255), channels).to(CUDA)
    compound = CompoundLoss(list(zip(loss.weights, loss.losses, strict=True)))
    base = torch.randn(2, channels, 16, 12, 8, device=CUDA)
    results = []
    for function in (loss, compound):
        logits = base.clone().requires_grad_()
        value = function(logits, labels)
        value.backward()
        results.append((value.item(), logits.grad))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)
    logits = base.bfloat16().requires_grad_()
    loss(logits, labels).backward()
    assert logits.grad.dtype == torch.bfloat16


def test_a_training_step_keeps_at_most_what_nnunets_keeps_on_cuda():
    import memory_vs_nnunet as memory
    import nnunet_reference

    if not nnunet_reference.network_installed():
        pytest.skip("dynamic-network-architectures is not installed")
    for plan in memory.PLANS:
        ours = memory.unetkit_bytes(plan, CUDA)  # precision auto, layout auto
        theirs, _ = memory.nnunet_bytes(plan, CUDA)  # fp16 autocast, as nnU-Net
        assert ours.total <= theirs.total, (plan.name, ours, theirs)
        assert ours.by_dtype.get("float32", 0) < 2**20
        torch.cuda.empty_cache()
