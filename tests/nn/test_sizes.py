"""Input-size rules, nearest accepted sizes, padding to an accepted size and the forward check."""

from __future__ import annotations

import pytest
import torch

from unetkit.nn import AttentionUNet, ResUNet, UNet, UNetPlusPlus, pad_to_valid, valid_input_sizes
from unetkit.nn.sizes import axis_multiples, nearest_valid_length, output_length


def test_valid_padding_ronneberger_572_gives_388():
    # 572 -conv-> 568 -pool-> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> bottleneck 28,
    # then 56 -> 52 -> 104 -> 100 -> 200 -> 196 -> 392 -> 388 (Ronneberger et al. 2015, Fig. 1).
    assert output_length(572, 4, "valid") == 388
    model = UNet(base_width=4, padding="valid")
    assert model.output_size(572) == (388, 388)
    assert model.output_size((572, 588)) == (388, 404)
    with torch.no_grad():
        out = model(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 1, 388, 388)


@pytest.mark.parametrize(
    ("n", "depth", "expected"),
    [
        (18, 1, 2),  # 14 -> 7 -> 3 -> 6 -> 2
        (16, 1, None),  # 12 -> 6 -> 2 -> 4 -> 0: shrinks below 1
        (19, 1, None),  # 15: odd before the pooling
        (44, 2, 4),  # 40 -> 20 -> 16 -> 8 -> 4 -> 8 -> 4 -> 8 -> 4
        (42, 2, None),  # 38 -> 19 -> 15: odd before the second pooling
    ],
)
def test_valid_output_length_hand_computed(n, depth, expected):
    assert output_length(n, depth, "valid") == expected


def test_same_padding_rule():
    assert [n for n in range(1, 70) if output_length(n, 4, "same")] == [16, 32, 48, 64]
    assert output_length(48, 4, "same") == 48
    assert output_length(0, 1, "same") is None


def test_nearest_valid_length():
    assert nearest_valid_length(250, 4, "same", "up") == 256
    assert nearest_valid_length(250, 4, "same", "down") == 240
    assert nearest_valid_length(3, 4, "same", "up") == 16
    assert nearest_valid_length(15, 4, "same", "down") is None
    assert nearest_valid_length(570, 4, "valid", "up") == 572
    assert nearest_valid_length(570, 4, "valid", "down") == 556
    with pytest.raises(ValueError, match="mode must be 'up' or 'down'"):
        nearest_valid_length(10, 2, "same", "nearest")


def test_model_size_methods():
    model = UNet(base_width=2, depth=3, spatial_dims=3)
    assert model.is_valid_input_size((16, 24, 8))
    assert not model.is_valid_input_size((16, 20, 8))
    assert model.nearest_valid_input_size((17, 24, 3)) == (24, 24, 8)
    assert model.nearest_valid_input_size((17, 24, 9), mode="down") == (16, 24, 8)
    with pytest.raises(ValueError, match=r"no accepted size <= \(5, 24, 9\).*smallest accepted"):
        model.nearest_valid_input_size((5, 24, 9), mode="down")
    with pytest.raises(ValueError, match=r"input size \(20, 20, 20\) is not accepted"):
        model.output_size(20)
    with pytest.raises(ValueError, match="needs 3 entries"):
        model.output_size((16, 16))


def test_valid_input_sizes():
    assert valid_input_sizes(UNet(base_width=2, depth=2), 20) == [4, 8, 12, 16, 20]
    sizes = valid_input_sizes(UNet(base_width=2, padding="valid"), 600, min_size=500)
    assert 572 in sizes and 556 in sizes and 570 not in sizes
    assert all(b - a == 16 for a, b in zip(sizes, sizes[1:], strict=False))


@pytest.mark.parametrize("cls", [UNet, ResUNet, AttentionUNet, UNetPlusPlus])
def test_valid_models_output_the_predicted_size(cls):
    model = cls(base_width=2, depth=2, padding="valid").eval()
    size = (44, 60)
    with torch.no_grad():
        out = model(torch.randn(1, 1, *size))
    assert tuple(out.shape[2:]) == model.output_size(size) == (4, 20)


def test_forward_rejects_unaccepted_size_with_nearest_sizes():
    model = UNet(base_width=2, depth=3)
    message = (
        r"input size \(20, 24\) is not accepted by UNet \(padding='same', depth=3: every size must "
        r"be a multiple of 8\); nearest accepted sizes: \(16, 24\) below, \(24, 24\) above"
    )
    with pytest.raises(ValueError, match=message):
        model(torch.randn(1, 1, 20, 24))
    with pytest.raises(ValueError, match=r"none below, \(8, 8\) above"):
        model(torch.randn(1, 1, 4, 8))
    valid = UNet(base_width=2, depth=4, padding="valid")
    with pytest.raises(
        ValueError,
        match=r"\(570, 572\).*padding='valid'.*\(556, 572\) below, "
        r"\(572, 572\) above",
    ):
        valid(torch.randn(1, 1, 570, 572))


def test_forward_rejects_wrong_channels_and_rank():
    model = UNet(in_channels=2, base_width=2, depth=1)
    with pytest.raises(ValueError, match=r"expects input \(B, 2, H, W\).*got shape \(1, 3, 8, 8\)"):
        model(torch.randn(1, 3, 8, 8))
    model3d = UNet(base_width=2, depth=1, spatial_dims=3)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\).*got shape \(1, 1, 8, 8\)"):
        model3d(torch.randn(1, 1, 8, 8))


def test_pad_to_valid_same_padding_round_trip():
    model = UNet(base_width=2, depth=3)
    x = torch.randn(2, 1, 21, 30)
    padded, crop = pad_to_valid(x, model)
    assert padded.shape == (2, 1, 24, 32)
    torch.testing.assert_close(padded[crop], x)
    # Reflect: the row before the image mirrors row 1 (the edge itself is not repeated).
    torch.testing.assert_close(padded[:, :, 0, 1:31], x[:, :, 1, :])
    with torch.no_grad():
        assert model(padded)[crop].shape == (2, 1, 21, 30)
    zeros, zero_crop = pad_to_valid(x, model, mode="constant")
    assert zeros[:, :, 0].abs().sum() == 0 and zeros[:, :, -2:].abs().sum() == 0
    torch.testing.assert_close(zeros[zero_crop], x)
    same, same_crop = pad_to_valid(torch.randn(1, 1, 16, 8), model)
    assert same.shape == (1, 1, 16, 8) and same_crop[2] == slice(0, 16)


def test_pad_to_valid_valid_padding_covers_and_aligns():
    model = UNet(base_width=2, depth=4, padding="valid")
    x = torch.randn(1, 1, 300, 200)
    padded, crop = pad_to_valid(x, model, mode="reflect")
    out_size = model.output_size(padded.shape[2:])
    assert all(o >= n for o, n in zip(out_size, x.shape[2:], strict=True))
    assert model.is_valid_input_size(padded.shape[2:])
    # Output pixel k sits over input pixel k + 92 (the margin at depth 4).
    aligned = tuple(slice(s.start + 92, s.stop + 92) for s in crop[2:])
    torch.testing.assert_close(padded[(slice(None), slice(None), *aligned)], x)
    assert crop[2].stop - crop[2].start == 300


def test_pad_to_valid_errors():
    model = UNet(base_width=2, depth=4)
    with pytest.raises(ValueError, match="reflect padding of 6 on an axis of size 5"):
        pad_to_valid(torch.randn(1, 1, 5, 16), model)
    padded, _ = pad_to_valid(torch.randn(1, 1, 5, 16), model, mode="replicate")
    assert padded.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="mode must be one of"):
        pad_to_valid(torch.randn(1, 1, 5, 16), model, mode="wrap")
    with pytest.raises(ValueError, match="expected \\(B, C, \\*spatial\\) with 2 spatial axes"):
        pad_to_valid(torch.randn(1, 5, 16), model)


# nnU-Net style 3D strides: the first axis is pooled once, the others three times.
ANISO_STRIDES = [[1, 2, 2], [2, 2, 2], [1, 2, 2]]


def aniso_unet() -> UNet:
    return UNet(base_width=2, depth=3, spatial_dims=3, strides=ANISO_STRIDES,
                kernel_sizes=[[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]])  # fmt: skip


def test_axis_multiples():
    assert axis_multiples(4) == (16, 16)
    assert axis_multiples(3, None, 3) == (8, 8, 8)
    assert axis_multiples(3, ANISO_STRIDES, 3) == (2, 8, 8)
    assert axis_multiples(3, [2, [1, 2], 1], 2) == (2, 4)  # an int is every axis
    with pytest.raises(ValueError, match=r"strides\[1\] must be 1 or 2 on every axis"):
        axis_multiples(2, [[1, 2], [3, 2]], 2)
    with pytest.raises(ValueError, match="strides must have 2 entries"):
        axis_multiples(2, [[1, 2]], 2)


def test_one_axis_rules_with_a_multiple():
    assert output_length(6, 3, "same", multiple=2) == 6
    assert output_length(6, 3, "same") is None  # default: 2**3
    assert nearest_valid_length(13, 3, "same", "up", multiple=2) == 14
    assert nearest_valid_length(13, 3, "same", "down", multiple=4) == 12
    assert output_length(572, 4, "valid", multiple=16) == 388
    with pytest.raises(ValueError, match="padding='valid' needs 2x pooling on every axis"):
        output_length(572, 4, "valid", multiple=8)


def test_anisotropic_model_accepts_per_axis_multiples():
    model = aniso_unet()
    assert model.is_valid_input_size((12, 40, 24))
    assert model.is_valid_input_size((2, 8, 8))
    assert not model.is_valid_input_size((12, 40, 20))
    assert not model.is_valid_input_size((13, 40, 24))
    assert model.output_size((12, 40, 24)) == (12, 40, 24)
    assert model.nearest_valid_input_size((13, 41, 25)) == (14, 48, 32)
    assert model.nearest_valid_input_size((13, 41, 25), mode="down") == (12, 40, 24)
    with pytest.raises(ValueError, match=r"no accepted size <= \(1, 8, 8\).*smallest accepted "
                       r"size is \(2, 8, 8\)"):  # fmt: skip
        model.nearest_valid_input_size((1, 8, 8), mode="down")
    message = (
        r"input size \(5, 40, 20\) is not accepted by UNet \(padding='same', depth=3, strides per "
        r"axis: the sizes must be multiples of \(2, 8, 8\)\); nearest accepted sizes: "
        r"\(4, 40, 16\) below, \(6, 40, 24\) above"
    )
    with pytest.raises(ValueError, match=message):
        model(torch.randn(1, 1, 5, 40, 20))
    with pytest.raises(ValueError, match=message):
        model.output_size((5, 40, 20))


def test_anisotropic_valid_input_sizes_per_axis():
    model = aniso_unet()
    assert valid_input_sizes(model, 10, axis=0) == [2, 4, 6, 8, 10]
    assert valid_input_sizes(model, 20, axis=-1) == [8, 16]
    assert valid_input_sizes(model, 20) == [8, 16]  # accepted on every axis
    assert valid_input_sizes(UNet(base_width=2, depth=2), 12, axis=1) == [4, 8, 12]
    with pytest.raises(ValueError, match=r"axis must be a spatial axis, 0..2, got 3"):
        valid_input_sizes(model, 20, axis=3)


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_pad_to_valid_anisotropic_round_trip(mode):
    model = aniso_unet().eval()
    x = torch.randn(2, 1, 5, 29, 19)
    padded, crop = pad_to_valid(x, model, mode=mode)
    assert padded.shape == (2, 1, 6, 32, 24)
    torch.testing.assert_close(padded[crop], x)
    assert crop[2:] == (slice(0, 5), slice(1, 30), slice(2, 21))
    with torch.no_grad():
        assert model(padded)[crop].shape == (2, 1, 5, 29, 19)
    same, same_crop = pad_to_valid(torch.randn(1, 1, 2, 8, 16), model)
    assert same.shape == (1, 1, 2, 8, 16) and same_crop[2] == slice(0, 2)
