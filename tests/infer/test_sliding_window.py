"""Sliding window, memory-bounded labels, TTA: hand-computed values and MONAI as reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit.infer.decision import decide as decide_labels
from unetkit.infer.tta import mirror_tta
from unetkit.infer.windows import (
    gaussian_importance,
    sliding_window_inference,
    sliding_window_labels,
    symmetric_pads,
    window_slices,
    window_starts,
)
from unetkit.nn.sizes import pad_spatial


def pad_to_size(x: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, tuple]:
    """Zero-pad ``x`` symmetrically up to ``size``; the crop back (as the windows do)."""
    before, after = symmetric_pads(x.shape[2:], size)
    crop = tuple(slice(b, b + n) for b, n in zip(before, x.shape[2:], strict=True))
    return pad_spatial(x, before, after, "constant"), crop


def conv_net(dims: int, cin: int = 1, cout: int = 3, seed: int = 0) -> nn.Module:
    """A small fully convolutional 'same' network (no pooling)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return nn.Sequential(conv(cin, 4, 3, padding=1), nn.Tanh(), conv(4, cout, 3, padding=1)).eval()


class Constant(nn.Module):
    def __init__(self, value: float, channels: int = 2) -> None:
        super().__init__()
        self.value, self.channels = value, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.channels, *x.shape[2:]), self.value)


def test_window_starts_hand_computed() -> None:
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(11, 4, 0.5) == [0, 2, 4, 6, 7]
    assert window_starts(10, 4, 0.0) == [0, 4, 6]
    assert window_starts(3, 4, 0.5) == [0]
    assert window_starts(4, 4, 0.9) == [0]
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 1.0)


def test_window_slices_cover_every_voxel_once_or_more() -> None:
    slices = window_slices((11, 7), (4, 3), 0.25)
    covered = torch.zeros(11, 7)
    for sl in slices:
        assert (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) == (4, 3)
        covered[sl] += 1
    assert covered.min() >= 1
    assert len(slices) == len(window_starts(11, 4, 0.25)) * len(window_starts(7, 3, 0.25))


def test_gaussian_importance_values() -> None:
    w = gaussian_importance((5,))
    sigma = 5 * 0.125
    expected = torch.exp(-torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0]) / (2 * sigma**2)).clamp_min(1e-3)
    torch.testing.assert_close(w, expected)
    w2 = gaussian_importance((4, 6))
    assert w2.shape == (4, 6)
    torch.testing.assert_close(w2, w2.flip(0).flip(1))  # symmetric about the centre
    assert w2.min() >= 1e-3


def test_pad_to_size_and_crop() -> None:
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded, crop = pad_to_size(x, (5, 4))
    assert padded.shape == (1, 1, 5, 4)
    torch.testing.assert_close(padded[(slice(None), slice(None), *crop)], x)


@pytest.mark.parametrize("dims,size,window", [(2, (37, 29), (16, 12)), (3, (13, 11, 9), (8, 8, 4))])
@pytest.mark.parametrize("gaussian", [True, False])
def test_constant_network_gives_constant_output(dims, size, window, gaussian) -> None:
    x = torch.randn(2, 1, *size)
    out = sliding_window_inference(x, Constant(0.37), window, 0.4, gaussian=gaussian,
                                   batch_size=3)
    assert out.shape == (2, 2, *size)
    torch.testing.assert_close(out, torch.full_like(out, 0.37))


def test_image_that_fits_one_window_equals_plain_forward() -> None:
    net = conv_net(2)
    x = torch.randn(1, 1, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(sliding_window_inference(x, net, None), net(x))
        torch.testing.assert_close(sliding_window_inference(x, net, (24, 20), 0.5), net(x))


def test_input_smaller_than_window_is_padded_and_cropped() -> None:
    net = conv_net(2)
    x = torch.randn(1, 1, 10, 7)
    with torch.no_grad():
        out = sliding_window_inference(x, net, (16, 16), 0.5)
        padded, crop = pad_to_size(x, (16, 16))
        expected = net(padded)[(slice(None), slice(None), *crop)]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dims,size,window,overlap", [
    (2, (45, 38), (16, 16), 0.5),
    (2, (30, 19), (12, 8), 0.25),
    (3, (14, 12, 10), (8, 8, 8), 0.5),
])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_agrees_with_monai(dims, size, window, overlap, mode) -> None:
    monai_inferers = pytest.importorskip("monai.inferers")
    net = conv_net(dims, cin=2, cout=3, seed=1)
    x = torch.randn(2, 2, *size)
    with torch.no_grad():
        ours = sliding_window_inference(x, net, window, overlap, gaussian=mode == "gaussian",
                                        batch_size=4)
        ref = monai_inferers.sliding_window_inference(x, window, 4, net, overlap=overlap,
                                                      mode=mode, sigma_scale=0.125)
    torch.testing.assert_close(ours, torch.as_tensor(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("accumulate", ["float32", "float16"])
@pytest.mark.parametrize("cout", [1, 3])
def test_region_labels_equal_full_accumulation(accumulate, cout) -> None:
    net = conv_net(3, cout=cout, seed=2)
    x = torch.randn(2, 1, 19, 13, 10)
    with torch.no_grad():
        full = sliding_window_inference(x, net, (8, 8, 8), 0.5)
        labels = sliding_window_labels(x, net, (8, 8, 8), 0.5, accumulate=accumulate,
                                       batch_size=2)
    expected = torch.stack([decide_labels(f) for f in full])
    assert labels.shape == (2, 19, 13, 10)
    if accumulate == "float32":
        assert torch.equal(labels, expected)
    else:  # half accumulators may flip voxels whose scores tie within ~1e-3
        assert (labels == expected).float().mean() > 0.995


def test_region_labels_without_overlap_and_small_input() -> None:
    net = conv_net(2, seed=3)
    x = torch.randn(1, 1, 20, 9)
    with torch.no_grad():
        for window, overlap in [((5, 4), 0.0), ((32, 32), 0.5)]:
            full = sliding_window_inference(x, net, window, overlap)
            labels = sliding_window_labels(x, net, window, overlap)
            assert torch.equal(labels[0], decide_labels(full[0]))


def test_half_accumulator_close_to_float32() -> None:
    net = conv_net(2)
    x = torch.randn(1, 1, 40, 33)
    with torch.no_grad():
        full = sliding_window_inference(x, net, (16, 16), 0.5)
        half = sliding_window_inference(x, net, (16, 16), 0.5, accumulate="float16")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=5e-3, atol=5e-3)


def test_decide_labels_binary_and_multiclass() -> None:
    assert decide_labels(torch.tensor([[[-1.0, 0.5]]])).tolist() == [[0, 1]]
    scores = torch.tensor([[0.1, 0.7], [0.5, 0.2], [0.4, 0.1]])[:, :, None]
    assert decide_labels(scores)[:, 0].tolist() == [1, 0]


def test_mirror_tta_hand_computed() -> None:
    calls = []

    def ramp(x: torch.Tensor) -> torch.Tensor:  # output = input plus its column index
        calls.append(1)
        return x + torch.arange(x.shape[-1], dtype=x.dtype)

    x = torch.zeros(1, 1, 2, 3)
    out = mirror_tta(ramp, [1])(x)
    # identity gives [0, 1, 2]; mirrored gives flip([0, 1, 2]) = [2, 1, 0]; mean is 1 everywhere
    torch.testing.assert_close(out, torch.ones(1, 1, 2, 3))
    calls.clear()
    mirror_tta(ramp, [0, 1])(x)
    assert len(calls) == 4
    assert mirror_tta(ramp, []) is ramp


def test_mirror_tta_equivariant_network_is_unchanged() -> None:
    x = torch.randn(1, 2, 6, 5, 4)
    torch.testing.assert_close(mirror_tta(torch.sigmoid, [0, 1, 2])(x), torch.sigmoid(x))


def test_wrong_output_size_is_reported() -> None:
    with pytest.raises(ValueError, match="overlap_tile"):
        sliding_window_inference(torch.zeros(1, 1, 20, 20), lambda t: t[..., 1:-1, 1:-1],
                                 (8, 8), 0.5)


def test_progress_callback_counts_windows() -> None:
    seen = []
    sliding_window_inference(torch.zeros(2, 1, 10, 10), Constant(1.0), (4, 4), 0.0,
                             batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2 * 9, 2 * 9)
