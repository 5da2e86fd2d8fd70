"""Blocks against hand-written functional versions of the formulas they implement."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetkit.nn.blocks import (
    AttentionGate,
    DoubleConv,
    ResidualBlock,
    UpBlock,
    center_crop,
    make_upsample,
)


def test_center_crop_is_a_centred_view():
    x = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).reshape(2, 3, 8, 10)
    out = center_crop(x, (4, 5))
    torch.testing.assert_close(out, x[:, :, 2:6, 2:7])
    assert out.data_ptr() == x[:, :, 2:6, 2:7].data_ptr()


def test_double_conv_valid_trims_four():
    block = DoubleConv(3, 5, padding="valid")
    assert block(torch.randn(1, 3, 12, 9)).shape == (1, 5, 8, 5)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_residual_block_matches_formula(padding):
    torch.manual_seed(0)
    block = ResidualBlock(3, 6, padding=padding).eval()
    x = torch.randn(2, 3, 10, 12)
    pad = 1 if padding == "same" else 0
    h = F.relu(F.conv2d(x, block.conv1.weight, block.conv1.bias, padding=pad))
    h = F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=pad)
    shortcut_in = x if padding == "same" else x[:, :, 2:-2, 2:-2]
    projection = block.shortcut[0]
    shortcut = F.conv2d(shortcut_in, projection.weight, projection.bias)
    torch.testing.assert_close(block(x), F.relu(h + shortcut))


def test_residual_block_identity_shortcut_when_widths_match():
    block = ResidualBlock(4, 4, spatial_dims=3, norm="batch").eval()
    assert isinstance(block.shortcut, torch.nn.Identity)
    with torch.no_grad():
        for module in (block.conv1, block.conv2):
            module.weight.zero_()
    x = torch.randn(1, 4, 4, 4, 4)
    # Zero residual branch (BN of zeros in eval is its shift, 0): output = ReLU(x).
    torch.testing.assert_close(block(x), F.relu(x))


def test_attention_gate_matches_oktay_formula():
    torch.manual_seed(0)
    gate = AttentionGate(6, 10)
    skip, g = torch.randn(2, 6, 8, 12), torch.randn(2, 10, 4, 6)
    q = F.relu(
        F.conv2d(skip, gate.theta_x.weight, stride=2)
        + F.conv2d(g, gate.phi_g.weight, gate.phi_g.bias)
    )
    alpha = torch.sigmoid(F.conv2d(q, gate.psi.weight, gate.psi.bias))
    alpha = F.interpolate(alpha, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(gate(skip, g), skip * alpha)
    assert gate.theta_x.out_channels == 3  # F_int = skip channels // 2


def test_interpolate_upsample_equals_interpolate_then_conv():
    torch.manual_seed(0)
    for dims, mode in ((2, "bilinear"), (3, "trilinear")):
        up = make_upsample(dims, 6, 3, "interpolate")
        x = torch.randn(1, 6, *(5,) * dims)
        conv = up[0]
        textbook = F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)
        textbook = (F.conv2d if dims == 2 else F.conv3d)(textbook, conv.weight, conv.bias)
        torch.testing.assert_close(up(x), textbook, rtol=1e-5, atol=1e-5)


def test_up_block_concatenates_up_then_skip():
    torch.manual_seed(0)
    block = UpBlock(8, 4, 4)
    x, skip = torch.randn(1, 8, 3, 5), torch.randn(1, 4, 6, 10)
    seen = {}
    block.conv.register_forward_pre_hook(lambda m, a: seen.setdefault("in", a[0]))
    block(x, skip)
    torch.testing.assert_close(seen["in"][:, :4], block.up(x))
    torch.testing.assert_close(seen["in"][:, 4:], skip)


def test_up_block_valid_crops_the_skip():
    block = UpBlock(8, 4, 4, padding="valid")
    out = block(torch.randn(1, 8, 6, 7), torch.randn(1, 4, 20, 21))
    assert out.shape == (1, 4, 8, 10)


def test_anisotropic_attention_gate_matches_oktay_formula():
    torch.manual_seed(0)
    gate = AttentionGate(6, 10, spatial_dims=3, stride=(1, 2, 2))
    skip, g = torch.randn(2, 6, 3, 8, 12), torch.randn(2, 10, 3, 4, 6)
    q = F.relu(
        F.conv3d(skip, gate.theta_x.weight, stride=(1, 2, 2))
        + F.conv3d(g, gate.phi_g.weight, gate.phi_g.bias)
    )
    alpha = torch.sigmoid(F.conv3d(q, gate.psi.weight, gate.psi.bias))
    alpha = F.interpolate(alpha, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
    torch.testing.assert_close(gate(skip, g), skip * alpha)
    assert gate.theta_x.kernel_size == (1, 2, 2)


@pytest.mark.parametrize("mode", ["transpose", "interpolate"])
def test_anisotropic_upsample_and_kernel(mode):
    up = make_upsample(3, 6, 3, mode, stride=(1, 2, 2))
    assert up(torch.randn(1, 6, 3, 4, 5)).shape == (1, 3, 3, 8, 10)
    block = DoubleConv(3, 5, spatial_dims=3, kernel_size=(1, 3, 3))
    assert block.conv1.kernel_size == (1, 3, 3) and block.conv1.padding == (0, 1, 1)
    assert block(torch.randn(1, 3, 3, 8, 10)).shape == (1, 5, 3, 8, 10)
    valid = DoubleConv(3, 5, spatial_dims=3, kernel_size=(1, 3, 3), padding="valid")
    assert valid(torch.randn(1, 3, 3, 8, 10)).shape == (1, 5, 3, 4, 6)
