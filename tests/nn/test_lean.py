"""The lean training step's layers: norms and pooling in the autocast dtype, pooling that keeps
no indices, and encoders that keep no pooled maps for backward (``unetkit.nn.functional``)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.nn import build_model, layers
from unetkit.nn import functional as lean

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from memory_vs_nnunet import saved_bytes  # noqa: E402

LAYOUTS = {2: torch.channels_last, 3: torch.channels_last_3d}


def _pool_reference(x: torch.Tensor, kernel: list[int]) -> torch.Tensor:
    return (F.max_pool3d if len(kernel) == 3 else F.max_pool2d)(x, kernel, kernel)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_instance_norm_is_torchs_formula_and_keeps_the_layout(dims, channels_last):
    torch.manual_seed(0)
    norm = layers.norm("instance", dims, 4)
    nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
    x = torch.randn(2, 4, *(5, 6, 7)[:dims]) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=LAYOUTS[dims])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = norm(a)
    reference = F.instance_norm(b, weight=norm.weight, bias=norm.bias, eps=norm.eps)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert ours.is_contiguous(memory_format=LAYOUTS[dims] if channels_last else
                              torch.contiguous_format)
    gradient = torch.randn_like(reference)
    ours.backward(gradient), reference.backward(gradient)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4)


def test_group_norm_is_nn_group_norm():
    torch.manual_seed(0)
    ours, reference = layers.norm("group", 2, 8, groups=4), nn.GroupNorm(4, 8)
    nn.init.normal_(ours.weight), nn.init.normal_(ours.bias)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 8, 5, 6)
    torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize(("name", "dims"), [("instance", 3), ("group", 3), ("instance", 2)])
def test_norms_run_in_the_autocast_dtype_and_save_no_float32_map(monkeypatch, name, dims):
    # Under autocast a norm gets a bfloat16 convolution output: it must neither return float32
    # (the next convolution would cast it back) nor save a float32 copy for backward. CUDA's
    # autocast casts group_norm's input to float32 (CPU autocast does not), so the norm must
    # call the kernel with autocast off: checked here on the CPU by watching the call.
    norm = layers.norm(name, dims, 8, groups=4)
    x = torch.randn(2, 8, *(6, 7, 5)[:dims]).bfloat16().requires_grad_()
    real, autocast_at_call = F.group_norm, []

    def watched(*args, **kwargs):
        autocast_at_call.append(torch.is_autocast_enabled("cpu"))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "group_norm", watched)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = saved_bytes(lambda: norm(x), list(norm.parameters()))
        out = norm(x)
    assert autocast_at_call == [False, False]
    assert out.dtype == torch.bfloat16
    assert kept.by_dtype.get("float32", 0) <= 2 * 2 * 8 * 4  # mean and rstd per (sample, group)
    torch.testing.assert_close(out.float(), norm(x.float()), atol=0.05, rtol=0.02)


POOL_CASES = [((2, 3, 9, 11), [2, 2], False), ((2, 3, 9, 11), [2, 2], True),
              ((2, 3, 5, 9, 11), [1, 2, 2], False), ((2, 3, 6, 8, 10), [2, 2, 2], True),
              ((1, 2, 7, 6, 9), [2, 2, 2], False)]


@pytest.mark.parametrize(("shape", "kernel", "channels_last"), POOL_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool_has_torchs_values_and_gradients_ties_included(shape, kernel, channels_last,
                                                                dtype):
    # Small integers: many windows hold their maximum twice; torch sends the gradient to the
    # first, and so must the lean pooling (which finds the maxima again in backward).
    x = torch.randint(-3, 4, shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=LAYOUTS[len(kernel)])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, reference = lean.max_pool(a, kernel), _pool_reference(b, kernel)
    assert torch.equal(ours, reference) and ours.dtype == dtype
    gradient = torch.randn(reference.shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    ours.backward(gradient), reference.backward(gradient)
    assert torch.equal(a.grad, b.grad)
    with torch.no_grad():
        assert torch.equal(lean.max_pool(x, kernel), reference)


def test_max_pool_saves_its_input_only_and_stays_bf16_under_cpu_autocast():
    # torch's pooling saves int64 indices (in 3D half the bytes of a bf16 input), and CPU
    # autocast runs max_pool3d in float32 (a float32 copy of the input, saved).
    x = torch.randn(2, 4, 8, 8, 8).bfloat16().requires_grad_()
    pool = layers.max_pool(3, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = saved_bytes(lambda: pool(x))
        assert pool(x).dtype == torch.bfloat16
    assert kept.storages == [(x.numel() * 2, "bfloat16")]


def _gradients(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    outputs = model(x)
    sum(o.square().mean() for o in outputs).backward()
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize(("name", "dims", "padding"), [
    ("unet", 2, "same"), ("resunet", 3, "valid"), ("attention_unet", 2, "same"),
    ("unetplusplus", 3, "same")])
def test_encoders_keep_no_pooled_map_and_give_the_same_gradients(monkeypatch, name, dims,
                                                                 padding):
    torch.manual_seed(0)
    model = build_model(name, in_channels=1, out_channels=3, spatial_dims=dims, base_width=4,
                        depth=2, norm="instance", padding=padding, deep_supervision=True)
    size = {("same", 2): (16, 16), ("same", 3): (8, 8, 8), ("valid", 3): (44, 44, 44)}
    x = torch.randn(2, 1, *size[padding, dims])
    plain = copy.deepcopy(model)
    lean_kept = saved_bytes(lambda: model(x), list(model.parameters()))
    lean_grads = _gradients(model, x)
    pooled: list[int] = []

    def keep_pooled(block, pool, skip):
        out = pool(skip)
        pooled.append(out.numel() * out.element_size())
        return block(out)

    monkeypatch.setattr(lean, "pool_then", keep_pooled)
    plain_kept = saved_bytes(lambda: plain(x), list(plain.parameters()))
    pooled_bytes = sum(pooled)
    assert pooled_bytes > 0 and lean_kept.total == plain_kept.total - pooled_bytes
    for ours, reference in zip(lean_grads, _gradients(plain, x), strict=True):
        torch.testing.assert_close(ours, reference)


def test_pool_then_hands_other_saved_tensors_to_the_hooks_around_it():
    # A memory probe or torch.utils.checkpoint sets saved-tensor hooks around the model; the
    # encoder's own hooks must pass every tensor they do not recompute on to them.
    torch.manual_seed(0)
    model = build_model("unet", out_channels=2, base_width=4, depth=2, norm="batch")
    x = torch.randn(2, 1, 16, 16)
    packed, unpacked = [], []

    def pack(tensor):
        packed.append(tensor.shape)
        return tensor.detach()

    def unpack(tensor):
        unpacked.append(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        loss = model(x).square().mean()
    inner = [shape for shape in packed if len(shape) == 4 and shape[-1] == 8]
    assert inner  # tensors saved inside the level-1 block reached the outer hooks
    loss.backward()
    assert len(unpacked) == len(packed)
