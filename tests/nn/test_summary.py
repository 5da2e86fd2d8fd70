"""model_summary: the design document's table, hand-computed costs and torch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from unetkit.nn import MODELS, UNet, build_model, model_summary, summary_totals
from unetkit.nn.summary import StageRow, summary_table

SECTION_7 = [
    ("enc1", (64, 256, 256)),
    ("pool1", (64, 128, 128)),
    ("enc2", (128, 128, 128)),
    ("pool2", (128, 64, 64)),
    ("enc3", (256, 64, 64)),
    ("pool3", (256, 32, 32)),
    ("enc4", (512, 32, 32)),
    ("pool4", (512, 16, 16)),
    ("bottleneck", (1024, 16, 16)),
    ("dec4", (512, 32, 32)),
    ("dec3", (256, 64, 64)),
    ("dec2", (128, 128, 128)),
    ("dec1", (64, 256, 256)),
    ("head", (1, 256, 256)),
]


def conv3x3_params(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout


@pytest.fixture(scope="module")
def default_rows() -> list[StageRow]:
    return model_summary(UNet(), (1, 256, 256))


def test_default_unet_rows_are_section_7(default_rows):
    assert [(r.name, r.output_shape) for r in default_rows] == SECTION_7
    details = {r.name: r.detail for r in default_rows if r.name.startswith("dec")}
    assert details == {
        "dec4": "cat 1024×32×32",
        "dec3": "cat 512×64×64",
        "dec2": "cat 256×128×128",
        "dec1": "cat 128×256×256",
    }


def test_default_unet_costs_hand_computed(default_rows):
    rows = {r.name: r for r in default_rows}
    assert rows["enc1"].params == conv3x3_params(1, 64) + conv3x3_params(64, 64) == 37_568
    assert rows["bottleneck"].params == conv3x3_params(512, 1024) + conv3x3_params(1024, 1024)
    assert rows["dec4"].params == (1024 * 512 * 4 + 512) + conv3x3_params(1024, 512) + (
        conv3x3_params(512, 512)
    )
    assert rows["pool1"].params == 0 and rows["pool1"].flops == 0
    # 2 x multiply-adds: out voxels x in channels x kernel.
    assert rows["enc1"].flops == 2 * 256 * 256 * 64 * 9 * (1 + 64)
    up4 = 2 * (16 * 16 * 1024) * 512 * 4  # transposed conv: in voxels x out channels x kernel
    assert rows["dec4"].flops == up4 + 2 * 32 * 32 * 512 * 9 * (1024 + 512)
    assert rows["head"].flops == 2 * 256 * 256 * 64
    assert rows["enc1"].activation_bytes == 64 * 256 * 256 * 4
    assert rows["head"].activation_bytes == 256 * 256 * 4
    assert rows["head"].detail == ""
    total = summary_totals(default_rows)
    assert total.params == sum(p.numel() for p in UNet().parameters()) == 31_030_593
    assert total.flops == sum(r.flops for r in default_rows)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_flops_match_torch_flop_counter(name, upsample):
    model = build_model(name, base_width=4, depth=3, upsample=upsample, spatial_dims=3).eval()
    x = torch.randn(1, 1, 16, 8, 24)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    rows = model_summary(model, (16, 8, 24))
    assert summary_totals(rows).flops == counter.get_total_flops()
    assert summary_totals(rows).params == sum(p.numel() for p in model.parameters())


def test_unet_plus_plus_and_deep_supervision_rows():
    model = build_model("unetplusplus", base_width=2, depth=2, out_channels=3)
    model.deep_supervision = True
    rows = model_summary(model, (8, 8))
    assert [r.name for r in rows] == [
        "enc1", "pool1", "enc2", "pool2", "bottleneck", "x0_1", "x1_1", "x0_2", "head"
    ]  # fmt: skip
    head = rows[-1]
    assert head.output_shape == (3, 8, 8)
    assert head.activation_bytes == 2 * 3 * 8 * 8 * 4  # both outputs are kept


def test_summary_does_not_touch_the_model():
    model = build_model("unet", base_width=2, depth=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_summary(model, (8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_summary_input_errors():
    model = build_model("unet", base_width=2, depth=2, in_channels=3)
    with pytest.raises(ValueError, match=r"input size \(10, 8\) is not accepted"):
        model_summary(model, (10, 8))
    with pytest.raises(ValueError, match="has 1 channels, the model takes 3"):
        model_summary(model, (1, 8, 8))
    with pytest.raises(ValueError, match="must have 2 spatial entries"):
        model_summary(model, (8,))


def test_summary_table_strings():
    rows = [
        StageRow("enc1", (4, 8, 8), 1234, 2_500_000_000, 2**20),
        StageRow("head", (1, 8, 8), 5, 0, 0, "x"),
    ]
    assert summary_table(rows) == [
        ["enc1", "4×8×8", "1,234", "2.500", "1.00", ""],
        ["head", "1×8×8", "5", "0.000", "0.00", "x"],
        ["total", "", "1,239", "2.500", "1.00", ""],
    ]
