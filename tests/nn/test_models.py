"""Every model x 2D/3D x norm x upsample x depth: shapes, gradients, deep supervision, bf16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit.nn import MODELS, UNetPlusPlus, build_model, pad_to_valid
from unetkit.runtime.device import cpu_has_fast_bf16

# Odd sizes on purpose: every case goes through pad_to_valid and is cropped back.
SIZES = {2: (23, 37), 3: (13, 16, 21)}
# (norm, upsample, depth, padding): together they cover every norm, both upsamplings, depth 1-4.
CONFIGS = [
    ("batch", "transpose", 3, "same"),
    ("instance", "interpolate", 2, "same"),
    ("group", "transpose", 1, "same"),
    ("none", "interpolate", 4, "same"),
    ("batch", "transpose", 2, "valid"),
]
CASES = [
    pytest.param(name, dims, *cfg, id=f"{name}-{dims}d-{cfg[0]}-{cfg[1]}-d{cfg[2]}-{cfg[3]}")
    for name in MODELS
    for dims in (2, 3)
    for cfg in CONFIGS
]


def tiny(
    name: str,
    dims: int,
    norm: str = "none",
    upsample: str = "transpose",
    depth: int = 2,
    padding: str = "same",
    **extra,
) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        name,
        in_channels=2,
        out_channels=3,
        spatial_dims=dims,
        base_width=4,
        depth=depth,
        norm=norm,
        norm_groups=2,
        upsample=upsample,
        padding=padding,
        **extra,
    )


def expected_ds_sizes(model: nn.Module, size: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Deep-supervision output sizes: all full size for UNet++, else full, 1/2, 1/4, ..."""
    if isinstance(model, UNetPlusPlus):
        return [size] * model.depth
    return [tuple(s // 2**k for s in size) for k in range(model.depth)]


@pytest.mark.parametrize(("name", "dims", "norm", "upsample", "depth", "padding"), CASES)
def test_forward_backward_every_parameter_gets_a_gradient(
    name, dims, norm, upsample, depth, padding
):
    model = tiny(name, dims, norm, upsample, depth, padding, deep_supervision=True).train()
    x = torch.randn(2, 2, *SIZES[dims])
    padded, crop = pad_to_valid(x, model, mode="replicate")
    outputs = model(padded)
    assert isinstance(outputs, list) and len(outputs) == depth
    full = tuple(model.output_size(padded.shape[2:]))
    if padding == "same" or isinstance(model, UNetPlusPlus):
        assert [tuple(o.shape[2:]) for o in outputs] == expected_ds_sizes(model, full)
    assert outputs[0].shape == (2, 3, *full)
    assert outputs[0][crop].shape == (2, 3, *SIZES[dims])
    loss = sum(o.square().mean() for o in outputs)
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "head" in n)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dims", [2, 3])
def test_deep_supervision_flag_only_changes_the_return_value(name, dims):
    with_ds = tiny(name, dims, depth=3, deep_supervision=True).eval()
    without = tiny(name, dims, depth=3, deep_supervision=False).eval()
    aux_keys = {k for k in with_ds.state_dict() if k.startswith("head.aux.")}
    assert aux_keys and set(with_ds.state_dict()) - set(without.state_dict()) == aux_keys
    # Strict loading both ways: a checkpoint without heads keeps ours, one with heads builds them.
    fresh = tiny(name, dims, depth=3, deep_supervision=True).eval()
    fresh_aux = {k: v.clone() for k, v in fresh.state_dict().items() if k in aux_keys}
    fresh.load_state_dict(without.state_dict())
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in fresh_aux.items())
    without.load_state_dict(with_ds.state_dict())
    assert set(without.state_dict()) == set(with_ds.state_dict())
    without.deep_supervision = False
    x = torch.randn(1, 2, *(8,) * dims)
    with torch.no_grad():
        single = without(x)
        several = with_ds(x)
        with_ds.deep_supervision = False
        toggled = with_ds(x)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 3, *(8,) * dims)
    assert len(several) == 3
    torch.testing.assert_close(several[0], single)
    torch.testing.assert_close(toggled, single)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(
    ("norm", "upsample"), [("batch", "transpose"), ("instance", "interpolate")]
)
def test_bf16_autocast_channels_last(name, dims, norm, upsample):
    model = tiny(name, dims, norm=norm, upsample=upsample, depth=2, deep_supervision=True).eval()
    size = (24, 40) if dims == 2 else (16, 16, 24)
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        reference = model(x)[0]
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    model = model.to(memory_format=fmt)
    x = x.to(memory_format=fmt).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(x)
    assert outputs[0].dtype == torch.bfloat16 and outputs[0].shape == reference.shape
    # No layer silently falls back to the contiguous layout. Without native bf16 (AVX2-only
    # CPUs) oneDNN's 3D bf16 convolution returns NCDHW; unetkit trains in fp32 there.
    if dims == 2 or cpu_has_fast_bf16():
        assert all(o.is_contiguous(memory_format=fmt) for o in outputs)
    scale = reference.abs().max().item()
    torch.testing.assert_close(outputs[0].float(), reference, atol=0.05 * scale, rtol=0.05)
    sum(o.float().mean() for o in outputs).backward()
    assert torch.isfinite(x.grad).all()


def test_unet_plus_plus_nodes():
    model = tiny("unetplusplus", 2, depth=3)
    assert sorted(model.decoder.nodes) == sorted(
        f"x{i}_{j}" for j in range(1, 4) for i in range(4 - j)
    )
    # X(0,3) sees up(X(1,2)) and X(0,0), X(0,1), X(0,2): 4 x 4 channels.
    assert model.decoder.nodes["x0_3"].conv.conv1.in_channels == 16
    assert model.decoder.nodes["x2_1"].conv.conv1.in_channels == 2 * 16


def test_norm_drops_conv_bias_and_instance_norm_is_affine():
    plain = tiny("unet", 2)
    assert plain.encoder.blocks[0].conv1.bias is not None
    normed = tiny("resunet", 3, norm="instance")
    block = normed.encoder.blocks[1]
    assert block.conv1.bias is None and block.shortcut[0].bias is None
    assert isinstance(block.norm1, nn.InstanceNorm3d) and block.norm1.affine
    grouped = tiny("unet", 2, norm="group")
    assert isinstance(grouped.encoder.blocks[0].norm2, nn.GroupNorm)
    assert grouped.encoder.blocks[0].norm2.num_groups == 2


def test_dropout_only_in_the_deepest_encoder_blocks():
    model = tiny("unet", 2, depth=3, dropout=0.3)
    drops = [block.drop for block in model.encoder.blocks]
    assert [isinstance(d, nn.Dropout2d) for d in drops] == [False, False, True, True]
    assert all(d.p == 0.3 for d in drops[2:])
    x = torch.randn(1, 2, 16, 16)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


def test_models_count_parameters_like_a_hand_count():
    # UNet 2D, in 1, out 1, widths 2-4, depth 1, no norm: conv3x3 params = 9*in*out + out.
    model = build_model("unet", base_width=2, depth=1)
    enc = (9 * 1 * 2 + 2) + (9 * 2 * 2 + 2)
    bottleneck = (9 * 2 * 4 + 4) + (9 * 4 * 4 + 4)
    up = 4 * 4 * 2 + 2  # ConvTranspose 4->2, kernel 2x2
    dec = (9 * 4 * 2 + 2) + (9 * 2 * 2 + 2)
    head = 2 * 1 + 1
    assert sum(p.numel() for p in model.parameters()) == enc + bottleneck + up + dec + head
    res = build_model("resunet", base_width=2, depth=1)
    projections = (1 * 2 + 2) + (2 * 4 + 4) + (4 * 2 + 2)  # 1x1 shortcuts with bias
    total = enc + bottleneck + up + dec + head + projections
    assert sum(p.numel() for p in res.parameters()) == total


def test_unet_plus_plus_valid_padding_node_sizes():
    # X(i,j) is 12 * (2**j - 1) smaller than X(i,0); X(0,depth) has U-Net's output size.
    model = tiny("unetplusplus", 2, depth=2, padding="valid", deep_supervision=True).eval()
    sizes = {}
    for name, node in model.decoder.nodes.items():
        node.register_forward_hook(
            lambda m, a, out, name=name: sizes.__setitem__(name, out.shape[2])
        )
    with torch.no_grad():
        outputs = model(torch.randn(1, 2, 44, 60))
    # enc1 40, enc2 16, bottleneck 4: x0_1 = 40 - 12, x1_1 = 16 - 12, x0_2 = 40 - 36.
    assert sizes == {"x0_1": 28, "x1_1": 4, "x0_2": 4}
    assert [tuple(o.shape[2:]) for o in outputs] == [(4, 20), (4, 20)]
    assert model.output_size((44, 60)) == (4, 20)
