"""``torch_network`` under autocast: convolution weights stored once in the autocast dtype give
exactly the outputs of autocast over the fp32 weights (which casts them at every call)."""

from __future__ import annotations

import pytest
import torch

from unetkit.nn import build_model
from unetkit.runtime.device import PrecisionPlan, autocast, to_memory_format
from unetkit.runtime.network import fuse_conv_bn, torch_network

CPU = torch.device("cpu")


@pytest.mark.parametrize(("name", "dims", "norm"), [
    ("unet", 2, "batch"), ("attention_unet", 2, "group"), ("resunet", 3, "instance")])
@pytest.mark.parametrize("channels_last", [True, False])
def test_bf16_weights_stored_once_give_autocasts_outputs(name, dims, norm,
                                                         channels_last) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=1, out_channels=3, spatial_dims=dims, base_width=8,
                        depth=2, norm=norm, deep_supervision=True).eval()
    plan = PrecisionPlan(torch.bfloat16, False, channels_last)
    x = torch.randn(2, 1, *(12,) * dims)
    reference = fuse_conv_bn(model)
    reference.deep_supervision = False
    if channels_last:
        reference.to(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    with torch.inference_mode(), autocast(plan, CPU):
        expected = reference(to_memory_format(x, plan)).float()
    fused = fuse_conv_bn(model)
    out = torch_network(fused, plan, CPU)(x)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.equal(out, expected.contiguous())
    convs = [m for m in fused.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d,
                                                          torch.nn.ConvTranspose2d,
                                                          torch.nn.ConvTranspose3d))]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    norms = [p for m in fused.modules() if isinstance(m, (torch.nn.GroupNorm,
                                                          torch.nn.InstanceNorm3d))
             for p in m.parameters()]
    assert all(p.dtype == torch.float32 for p in norms)  # autocast keeps these in fp32


def test_fp32_keeps_its_weights() -> None:
    model = build_model("unet", in_channels=1, out_channels=2, base_width=4, depth=2).eval()
    torch_network(model, PrecisionPlan(None, False, True), CPU)
    assert all(p.dtype == torch.float32 for p in model.parameters())
