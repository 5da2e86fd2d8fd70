"""The default UNet reproduces the design document exactly (sections 7 and 9)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from unetkit.nn import UNet


# ---- Section 9 of the design document, verbatim (comments translated) -------------------------
class DoubleConv(nn.Module):
    # Conv -> ReLU -> Conv -> ReLU
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


class SkeletonUNet(nn.Module):
    def __init__(self, in_ch=1, out_ch=1):
        super().__init__()
        self.down1 = DoubleConv(in_ch, 64)
        self.down2 = DoubleConv(64, 128)
        self.down3 = DoubleConv(128, 256)
        self.down4 = DoubleConv(256, 512)
        self.bottom = DoubleConv(512, 1024)

        self.pool = nn.MaxPool2d(2)

        self.up4 = nn.ConvTranspose2d(1024, 512, 2, stride=2)
        self.conv4 = DoubleConv(1024, 512)  # 512 (up) + 512 (skip)

        self.up3 = nn.ConvTranspose2d(512, 256, 2, stride=2)
        self.conv3 = DoubleConv(512, 256)

        self.up2 = nn.ConvTranspose2d(256, 128, 2, stride=2)
        self.conv2 = DoubleConv(256, 128)

        self.up1 = nn.ConvTranspose2d(128, 64, 2, stride=2)
        self.conv1 = DoubleConv(128, 64)

        self.out_conv = nn.Conv2d(64, out_ch, 1)

    def forward(self, x):
        x1 = self.down1(x)
        x2 = self.down2(self.pool(x1))
        x3 = self.down3(self.pool(x2))
        x4 = self.down4(self.pool(x3))
        xb = self.bottom(self.pool(x4))

        u4 = self.up4(xb)
        u4 = torch.cat([u4, x4], dim=1)
        u4 = self.conv4(u4)

        u3 = self.up3(u4)
        u3 = torch.cat([u3, x3], dim=1)
        u3 = self.conv3(u3)

        u2 = self.up2(u3)
        u2 = torch.cat([u2, x2], dim=1)
        u2 = self.conv2(u2)

        u1 = self.up1(u2)
        u1 = torch.cat([u1, x1], dim=1)
        u1 = self.conv1(u1)

        out = self.out_conv(u1)
        return out


# ---- Section 7: the size flow for a 1x256x256 input --------------------------------------------
SECTION_7 = {
    "enc1": (64, 256, 256),
    "pool1": (64, 128, 128),
    "enc2": (128, 128, 128),
    "pool2": (128, 64, 64),
    "enc3": (256, 64, 64),
    "pool3": (256, 32, 32),
    "enc4": (512, 32, 32),
    "pool4": (512, 16, 16),
    "bottleneck": (1024, 16, 16),
    "dec4": (512, 32, 32),
    "dec3": (256, 64, 64),
    "dec2": (128, 128, 128),
    "dec1": (64, 256, 256),
    "head": (1, 256, 256),
}
SECTION_7_CONCAT = {
    "dec4": (1024, 32, 32),
    "dec3": (512, 64, 64),
    "dec2": (256, 128, 128),
    "dec1": (128, 256, 256),
}
# 1x1 convs 128->1, 256->1, 512->1 on dec2..dec4 (weights + bias), always built.
AUX_HEAD_PARAMS = (128 + 1) + (256 + 1) + (512 + 1)


def skeleton_to_unetkit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the skeleton's state-dict keys to unetkit's UNet layout."""
    blocks = {"down1": 0, "down2": 1, "down3": 2, "down4": 3, "bottom": 4}
    stages = {"4": 0, "3": 1, "2": 2, "1": 3}
    mapped = {}
    for key, value in state.items():
        module, rest = key.split(".", 1)
        if module in blocks:
            index, param = rest.removeprefix("net.").split(".")
            conv = {"0": "conv1", "2": "conv2"}[index]
            new = f"encoder.blocks.{blocks[module]}.{conv}.{param}"
        elif module.startswith("up"):
            new = f"decoder.stages.{stages[module[2:]]}.up.{rest}"
        elif module.startswith("conv"):
            index, param = rest.removeprefix("net.").split(".")
            conv = {"0": "conv1", "2": "conv2"}[index]
            new = f"decoder.stages.{stages[module[4:]]}.conv.{conv}.{param}"
        else:
            assert module == "out_conv"
            new = f"head.main.{rest}"
        mapped[new] = value
    return mapped


@pytest.fixture(scope="module")
def reference_run():
    """One 1x1x256x256 forward through the skeleton and through unetkit's UNet with its weights."""
    torch.manual_seed(0)
    skeleton = SkeletonUNet().eval()
    model = UNet().eval()
    missing, unexpected = model.load_state_dict(
        skeleton_to_unetkit(skeleton.state_dict()), strict=False
    )
    shapes, concat, handles = {}, {}, []
    for name, stage in model.named_stages():
        handles.append(
            stage.register_forward_hook(
                lambda m, a, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
            )
        )
        if hasattr(stage, "conv"):
            handles.append(
                stage.conv.register_forward_pre_hook(
                    lambda m, a, name=name: concat.__setitem__(name, tuple(a[0].shape[1:]))
                )
            )
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        expected = skeleton(x)
        actual = model(x)
    for handle in handles:
        handle.remove()
    return {
        "skeleton": skeleton,
        "model": model,
        "missing": missing,
        "unexpected": unexpected,
        "shapes": shapes,
        "concat": concat,
        "expected": expected,
        "actual": actual,
    }


def test_every_stage_matches_section_7(reference_run):
    assert reference_run["shapes"] == SECTION_7
    assert reference_run["concat"] == SECTION_7_CONCAT


def test_parameter_count_equals_skeleton(reference_run):
    skeleton_params = sum(p.numel() for p in reference_run["skeleton"].parameters())
    assert skeleton_params == 31_030_593
    model = reference_run["model"]
    assert sum(p.numel() for p in model.parameters()) == skeleton_params
    # Switching deep supervision on adds the three 1x1 auxiliary heads, and only those.
    model.deep_supervision = True
    assert sum(p.numel() for p in model.parameters()) == skeleton_params + AUX_HEAD_PARAMS
    model.deep_supervision = False


def test_skeleton_weights_load_and_outputs_match(reference_run):
    # The default UNet has exactly the skeleton's tensors: nothing missing, nothing extra.
    assert reference_run["unexpected"] == []
    assert reference_run["missing"] == []
    expected, actual = reference_run["expected"], reference_run["actual"]
    assert actual.shape == expected.shape == (1, 1, 256, 256)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_default_layers_are_the_textbook_ones(reference_run):
    model = reference_run["model"]
    block = model.encoder.blocks[0]
    assert isinstance(block.conv1, nn.Conv2d) and block.conv1.kernel_size == (3, 3)
    assert block.conv1.padding == (1, 1) and block.conv1.bias is not None
    assert isinstance(block.norm1, nn.Identity) and block.act1.inplace
    assert isinstance(model.encoder.pools[0], nn.MaxPool2d)
    up = model.decoder.stages[0].up
    assert isinstance(up, nn.ConvTranspose2d) and up.kernel_size == (2, 2) and up.stride == (2, 2)
    assert model.widths == (64, 128, 256, 512, 1024)
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())
