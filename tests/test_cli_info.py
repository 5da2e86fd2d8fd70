"""``unetkit info``: the per-stage table and clean errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from unetkit.cli import app

runner = CliRunner()

SECTION_7 = [
    ("enc1", "64×256×256"),
    ("enc2", "128×128×128"),
    ("enc3", "256×64×64"),
    ("enc4", "512×32×32"),
    ("bottleneck", "1024×16×16"),
    ("dec4", "512×32×32"),
    ("dec3", "256×64×64"),
    ("dec2", "128×128×128"),
    ("dec1", "64×256×256"),
    ("head", "1×256×256"),
]


def test_info_default_unet_prints_section_7_rows():
    result = runner.invoke(app, ["info", "--input-size", "256,256"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, shape in SECTION_7:
        assert any(f" {name} " in line and f" {shape} " in line for line in lines), name
    assert "31,030,593" in result.output and "96.184" in result.output
    assert "UNet 2D" in result.output


def test_info_typed_and_free_options_3d():
    args = ["info", "resunet", "--spatial-dims", "3", "--base-width", "4", "--norm", "group",
            "-o", "norm_groups=2", "-s", "32", "--out-channels", "3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ResUNet 3D" in result.output and "norm group" in result.output
    assert "3×32×32×32" in result.output and "4×32×32×32" in result.output


def test_info_valid_padding_shows_smaller_output():
    result = runner.invoke(app, ["info", "--padding", "valid", "--base-width", "2", "-s", "572"])
    assert result.exit_code == 0, result.output
    assert "1×388×388" in result.output


def test_info_anisotropic_strides_and_kernels():
    args = ["info", "--spatial-dims", "3", "--base-width", "2", "--depth", "2", "-s", "6,16,16",
            "-o", "strides=[[1,2,2],[2,2,2]]", "-o", "kernel_sizes=[[1,3,3],[3,3,3],[3,3,3]]"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2×6×8×8" in result.output and "8×3×4×4" in result.output  # pool1, bottleneck
    assert "1×6×16×16" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "vnet"], "unknown model 'vnet'"),
        (["info", "-o", "nrom=batch"], "unknown option 'nrom'"),
        (["info", "-o", "norm"], "expected key=value"),
        (["info", "--norm", "layer"], "norm must be one of"),
        (["info", "-s", "250,250"], "input size (250, 250) is not accepted"),
        (["info", "-s", "abc"], "expected integers such as 256,256"),
        (["info", "--depth", "1", "-o", "strides=[[1,3]]"], "strides[0] must be 1 or 2"),
        (["info", "--depth", "1", "-o", "strides=[[1,2]]", "-s", "5,5"],
         "the sizes must be multiples of (1, 2)"),
        (["info", "-o", "widths=[8,16"], "--option 'widths=[8,16': not a valid value"),
    ],
)
def test_info_errors_exit_1_without_traceback(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert message in flat
    assert "Traceback" not in result.output
