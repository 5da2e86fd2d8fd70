"""Anisotropic strides and kernel sizes: shapes, layers, defaults, summaries and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from unetkit.config import Config, config_to_dict
from unetkit.nn import MODELS, UNetPlusPlus, build_model, model_summary, pad_to_valid
from unetkit.nn.summary import summary_totals
from unetkit.runtime.checkpoint import (
    build_model_from_config,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)

# nnU-Net style: no pooling and kernel 1 along the thick first axis in the first stages.
ANISO = {
    2: {"strides": [[1, 2], [2, 2]], "kernel_sizes": [[1, 3], [3, 3], [3, 3]]},
    3: {
        "strides": [[1, 2, 2], [2, 2, 2], [1, 2, 2]],
        "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    },
}
# Odd sizes on purpose: every case goes through pad_to_valid and is cropped back.
SIZES = {2: (7, 37), 3: (5, 29, 19)}
CASES = [
    pytest.param(name, dims, upsample, id=f"{name}-{dims}d-{upsample}")
    for name in MODELS
    for dims in (2, 3)
    for upsample in ("transpose", "interpolate")
]


def aniso(name: str, dims: int, upsample: str = "transpose", **extra) -> nn.Module:
    torch.manual_seed(0)
    options = ANISO[dims]
    return build_model(
        name,
        in_channels=2,
        out_channels=3,
        spatial_dims=dims,
        base_width=4,
        depth=len(options["strides"]),
        norm="instance",
        upsample=upsample,
        **options,
        **extra,
    )


def level_sizes(size: tuple[int, ...], strides: list[list[int]]) -> list[tuple[int, ...]]:
    """Size at every level: full, then divided by the cumulative strides."""
    sizes = [tuple(size)]
    for level in strides:
        sizes.append(tuple(n // s for n, s in zip(sizes[-1], level, strict=True)))
    return sizes


@pytest.mark.parametrize(("name", "dims", "upsample"), CASES)
def test_forward_backward_deep_supervision_shapes(name, dims, upsample):
    model = aniso(name, dims, upsample, deep_supervision=True).train()
    x = torch.randn(2, 2, *SIZES[dims])
    padded, crop = pad_to_valid(x, model, mode="replicate")
    assert model.is_valid_input_size(padded.shape[2:])
    outputs = model(padded)
    strides = ANISO[dims]["strides"]
    full = tuple(padded.shape[2:])
    expected = (
        [full] * len(strides)
        if isinstance(model, UNetPlusPlus)
        else level_sizes(full, strides)[: len(strides)]
    )
    assert [tuple(o.shape[2:]) for o in outputs] == expected
    assert outputs[0][crop].shape == (2, 3, *SIZES[dims])
    sum(o.square().mean() for o in outputs).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list(MODELS))
def test_nnunet_like_3d_example(name):
    model = aniso(name, 3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, 12, 40, 24))
    assert out.shape == (1, 3, 12, 40, 24)
    skips = model.encoder(torch.randn(1, 2, 12, 40, 24))
    assert [tuple(s.shape[2:]) for s in skips] == [
        (12, 40, 24), (12, 20, 12), (6, 10, 6), (6, 5, 3)
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_default_none_builds_exactly_the_isotropic_modules(name, dims, upsample):
    depth = 3
    common = dict(spatial_dims=dims, base_width=2, depth=depth, upsample=upsample)
    default = build_model(name, **common, deep_supervision=True)
    explicit = build_model(
        name,
        **common,
        strides=[[2] * dims] * depth,
        kernel_sizes=[[3] * dims] * (depth + 1),
        deep_supervision=True,
    )
    ints = build_model(
        name, **common, strides=[2] * depth, kernel_sizes=[3] * (depth + 1), deep_supervision=True
    )
    for other in (explicit, ints):
        assert repr(other) == repr(default)
        assert {k: v.shape for k, v in other.state_dict().items()} == {
            k: v.shape for k, v in default.state_dict().items()
        }
        count = sum(p.numel() for p in other.parameters())
        assert count == sum(p.numel() for p in default.parameters())
    assert default.strides == ((2,) * dims,) * depth
    assert default.kernel_sizes == ((3,) * dims,) * (depth + 1)


def test_anisotropic_layers_use_the_level_stride_and_stage_kernel():
    model = aniso("attention_unet", 3)
    pools = [(p.kernel_size, p.stride) for p in model.encoder.pools]
    assert pools == [((1, 2, 2), (1, 2, 2)), (2, 2), ((1, 2, 2), (1, 2, 2))]
    first = model.encoder.blocks[0].conv1
    assert first.kernel_size == (1, 3, 3) and first.padding == (0, 1, 1)
    assert model.encoder.blocks[2].conv2.kernel_size == (3, 3, 3)
    # decoder stages are deepest first: stages[k] works on level depth - 1 - k
    up = [stage.up for stage in model.decoder.stages]
    assert [(u.kernel_size, u.stride) for u in up] == [
        ((1, 2, 2), (1, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((1, 2, 2), (1, 2, 2))
    ]  # fmt: skip
    assert [s.conv.conv1.kernel_size for s in model.decoder.stages] == [
        (3, 3, 3), (1, 3, 3), (1, 3, 3)
    ]  # fmt: skip
    gate = model.decoder.stages[-1].gate
    assert gate.theta_x.kernel_size == gate.theta_x.stride == (1, 2, 2)
    assert gate.up.scale_factor == (1.0, 2.0, 2.0)
    interpolated = aniso("unet", 3, "interpolate")
    assert interpolated.decoder.stages[0].up[1].scale_factor == (1.0, 2.0, 2.0)


def test_unet_plus_plus_node_upsampling_uses_its_level_stride():
    model = aniso("unetplusplus", 3)
    for key, node in model.decoder.nodes.items():
        level = int(key[1 : key.index("_")])  # node x{i}_{j} lives on level i
        assert node.up.stride == node.up.kernel_size == tuple(ANISO[3]["strides"][level])
        assert node.conv.conv1.kernel_size == tuple(ANISO[3]["kernel_sizes"][level])


def test_residual_block_valid_trim_follows_the_kernel():
    from unetkit.nn.blocks import ResidualBlock

    block = ResidualBlock(2, 4, spatial_dims=3, padding="valid", kernel_size=(1, 3, 3))
    assert block(torch.randn(1, 2, 5, 9, 8)).shape == (1, 4, 5, 5, 4)


@pytest.mark.parametrize("name", list(MODELS))
def test_summary_of_an_anisotropic_model_matches_torch_flop_counter(name):
    model = aniso(name, 3).eval()
    size = (6, 24, 16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 2, *size))
    rows = model_summary(model, size)
    shapes = {r.name: r.output_shape for r in rows}
    assert shapes["pool1"] == (4, 6, 12, 8) and shapes["bottleneck"] == (32, 3, 3, 2)
    assert summary_totals(rows).flops == counter.get_total_flops()
    assert summary_totals(rows).params == sum(p.numel() for p in model.parameters())


def test_checkpoint_round_trip_through_the_config(tmp_path):
    config = Config.model_validate(
        {"model": {"name": "resunet", "spatial_dims": 3, "out_channels": 2, "base_width": 4,
                   "depth": 3, **ANISO[3]}}
    )  # fmt: skip
    assert config.model.build_options()["strides"] == ANISO[3]["strides"]
    model = build_model_from_config(config).eval()
    assert model.strides == ((1, 2, 2), (2, 2, 2), (1, 2, 2))
    assert model.kernel_sizes[0] == (1, 3, 3)
    checkpoint = {"config": config_to_dict(config), "model_state": model.state_dict(),
                  "labels": {0: "background", 1: "c1"}}  # fmt: skip
    path = save_checkpoint(checkpoint, tmp_path / "model.pt")
    rebuilt = model_from_checkpoint(load_checkpoint(path))
    assert rebuilt.strides == model.strides and rebuilt.kernel_sizes == model.kernel_sizes
    x = torch.randn(1, 1, 4, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    plain_config = {"spatial_dims": 3, "out_channels": 2, "base_width": 2}
    assert "strides" not in Config.model_validate({"model": plain_config}).model.build_options()
    plain = build_model_from_config(Config.model_validate({"model": plain_config}))
    assert plain.strides == ((2, 2, 2),) * 4 and plain.kernel_sizes == ((3, 3, 3),) * 5
