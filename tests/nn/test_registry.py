"""build_model: names, argument copying and every validation message."""

from __future__ import annotations

import re

import pytest

from unetkit.config import ModelConfig
from unetkit.nn import MODELS, AttentionUNet, ResUNet, UNet, UNetPlusPlus, build_model


def test_names_map_to_classes():
    assert {
        "unet": UNet,
        "resunet": ResUNet,
        "attention_unet": AttentionUNet,
        "unetplusplus": UNetPlusPlus,
    } == MODELS
    assert type(build_model("Attention-UNet", base_width=2, depth=1)) is AttentionUNet


def test_builds_from_model_config_options():
    config = ModelConfig(name="resunet", out_channels=3, widths=[4, 8, 16], depth=2, norm="group")
    model = build_model(config.name, norm_groups=4, **config.build_options())
    assert isinstance(model, ResUNet)
    assert model.widths == (4, 8, 16) and model.out_channels == 3 and model.depth == 2


def test_arguments_are_copied_not_kept():
    widths = [2, 4, 8]
    model = build_model("unet", widths=widths, depth=2)
    widths.append(16)
    assert model.widths == (2, 4, 8) and widths == [2, 4, 8, 16]


def test_attributes_of_the_contract():
    model = build_model("unet", in_channels=2, out_channels=4, spatial_dims=3, base_width=2)
    assert (model.in_channels, model.out_channels, model.spatial_dims) == (2, 4, 3)
    assert (model.depth, model.padding, model.deep_supervision) == (4, "same", False)
    model.deep_supervision = True
    assert model.deep_supervision is True


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "unet3",
            {},
            "unknown model 'unet3' (did you mean 'unet'?); known models: unet, resunet, "
            "attention_unet, unetplusplus",
        ),
        ("vnet", {}, "unknown model 'vnet'"),
        (
            "unet",
            {"nrom": "batch"},
            "unknown option 'nrom' for model 'unet' (did you mean 'norm'?); valid options: "
            "in_channels, out_channels, spatial_dims, base_width, widths, depth, strides, "
            "kernel_sizes, norm, upsample, padding, dropout, norm_groups, deep_supervision",
        ),
        (
            "unet",
            {"norm": "layer"},
            "norm must be one of 'none', 'batch', 'instance', 'group'; got 'layer'",
        ),
        ("unet", {"depth": 0}, "depth (number of poolings) must be an integer from 1 to 6, got 0"),
        ("unet", {"depth": 7}, "depth (number of poolings) must be an integer from 1 to 6, got 7"),
        (
            "unet",
            {"widths": [8, 16, 32], "depth": 4},
            "widths must have depth + 1 = 5 entries (one per encoder stage, bottleneck last), "
            "got 3: [8, 16, 32]; change widths or depth",
        ),
        ("unet", {"widths": "8,16", "depth": 1}, "widths must be a list of 2 positive integers"),
        ("unet", {"widths": [8, 0], "depth": 1}, "widths[1] must be a positive integer, got 0"),
        (
            "unet",
            {"norm": "group", "base_width": 4},
            "norm='group' needs every width divisible by norm_groups=8, but [4] of widths "
            "[4, 8, 16, 32, 64] are not; choose another norm_groups or widths",
        ),
        ("unet", {"spatial_dims": 1}, "spatial_dims must be 2 or 3, got 1"),
        ("unet", {"upsample": "pixelshuffle"}, "upsample must be one of 'transpose', 'interp"),
        ("unet", {"padding": "reflect"}, "padding must be one of 'same', 'valid'; got 'reflect'"),
        ("unet", {"dropout": 1.0}, "dropout must be a probability in [0, 1), got 1.0"),
        ("unet", {"in_channels": 0}, "in_channels must be a positive integer, got 0"),
        ("unet", {"out_channels": 2.5}, "out_channels must be a positive integer, got 2.5"),
        ("unet", {"base_width": -1}, "base_width must be a positive integer, got -1"),
        ("unet", {"norm_groups": 0, "norm": "group"}, "norm_groups must be a positive integer"),
        (
            "unet",
            {"strides": [[2, 2]] * 3},
            "strides must have 4 entries (depth = 4, one per pooling level), got 3: "
            "[[2, 2], [2, 2], [2, 2]]; change strides or depth",
        ),
        (
            "resunet",
            {"depth": 2, "strides": "22"},
            "strides must be a list of 2 entries (depth = 2, one per pooling level), got '22'",
        ),
        ("unet", {"depth": 2, "strides": [[2, 3], 2]}, "strides[0] must be 1 or 2 on every axis, "
         "got [2, 3]"),
        ("unet", {"depth": 1, "strides": [4]}, "strides[0] must be 1 or 2 on every axis, got "
         "[4, 4]"),
        ("unet", {"depth": 1, "strides": [[True, 2]]}, "strides[0] must be 1 or 2 on every axis"),
        (
            "attention_unet",
            {"depth": 1, "strides": [[2, 2, 2]]},
            "strides[0] must have 2 entries (one per spatial axis of a 2D model) or be a single "
            "int, got 3: [2, 2, 2]",
        ),
        (
            "unet",
            {"depth": 1, "strides": [None]},
            "strides[0] must be an int or a list of 2 ints (one per spatial axis), got None",
        ),
        (
            "unetplusplus",
            {"depth": 1, "spatial_dims": 3, "kernel_sizes": [[3, 3, 3]]},
            "kernel_sizes must have 2 entries (depth + 1 = 2, one per encoder stage, bottleneck "
            "last), got 1: [[3, 3, 3]]; change kernel_sizes or depth",
        ),
        (
            "unet",
            {"depth": 1, "kernel_sizes": [[3, 3], [5, 3]]},
            "kernel_sizes[1] must be 1 or 3 on every axis, got [5, 3]",
        ),
        (
            "unet",
            {"depth": 1, "kernel_sizes": [3, 2.0]},
            "kernel_sizes[1] must be an int or a list of 2 ints (one per spatial axis), got 2.0",
        ),
        (
            "unet",
            {"depth": 1, "padding": "valid", "strides": [[1, 2]]},
            "padding='valid' supports only the default strides (2 on every axis) and kernel_sizes "
            "(3 on every axis), got strides=[[1, 2]], kernel_sizes=[[3, 3], [3, 3]]; use "
            "padding='same'",
        ),
        (
            "unet",
            {"depth": 1, "padding": "valid", "kernel_sizes": [[3, 3], [3, 1]]},
            "padding='valid' supports only the default strides",
        ),
    ],
)
def test_validation_messages(name, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(name, **options)


def test_direct_construction_is_validated_too():
    with pytest.raises(ValueError, match=re.escape("depth (number of poolings)")):
        UNet(depth=9)


def test_per_axis_options_are_resolved_and_copied():
    strides = [[1, 2, 2], 2]
    model = build_model("unet", spatial_dims=3, base_width=2, depth=2, strides=strides,
                        kernel_sizes=[[1, 3, 3], 3, 3])  # fmt: skip
    strides[0][0] = 2
    assert model.strides == ((1, 2, 2), (2, 2, 2)) == model.options.strides
    assert model.kernel_sizes == ((1, 3, 3), (3, 3, 3), (3, 3, 3))
    valid = build_model("unet", base_width=2, depth=1, padding="valid", strides=[[2, 2]],
                        kernel_sizes=[3, 3])  # fmt: skip
    assert valid.strides == ((2, 2),)
