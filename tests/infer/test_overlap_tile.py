"""Overlap-tile mode: stitched tiles equal one whole-image 'valid' forward on mirrored input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unetkit.infer.overlap_tile import overlap_tile_inference, tile_origins
from unetkit.nn.sizes import pad_spatial


def mirror_pad(x, before, after):
    return pad_spatial(x, before, after, "mirror")


class ValidNet(nn.Module):
    """(conv3 valid => relu) * 2 => maxpool => conv3 valid => upsample x2: margin 4 in, x2 out."""

    def __init__(self, dims: int = 2, pool: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.pool = pool
        self.a = conv(1, 3, 3)
        self.b = conv(3, 3, 3)
        self.c = conv(3, 2, 3 if pool else 1)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b(torch.relu(self.a(x))))
        if not self.pool:
            return self.c(x)
        pool = nn.functional.max_pool2d if self.dims == 2 else nn.functional.max_pool3d
        x = self.c(pool(x, 2))
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def test_mirror_pad_matches_numpy_reflect() -> None:
    x = torch.arange(5.0).reshape(1, 1, 5)
    out = mirror_pad(x, [3], [4])
    expected = np.pad(np.arange(5.0), (3, 4), mode="reflect")
    assert out[0, 0].tolist() == expected.tolist()
    long = mirror_pad(torch.arange(3.0).reshape(1, 1, 3), [0], [7])  # longer than the axis
    assert long[0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1]


def test_tile_origins() -> None:
    assert tile_origins(10, 4, 4) == [0, 4, 8]
    assert tile_origins(3, 4, 4) == [0]
    assert tile_origins(9, 6, 4) == [0, 4]


@pytest.mark.parametrize("size", [(23, 17), (8, 30)])
def test_no_pooling_tiles_equal_whole_forward(size) -> None:
    net = ValidNet(pool=False).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        tiled = overlap_tile_inference(x, net, (9, 11), (2, 2), batch_size=3)
        whole = net(mirror_pad(x, [2, 2], [2, 2]))
    assert tiled.shape == (2, 2, *size)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims,size,tile",
                         [(2, (29, 22), (14, 18)), (3, (11, 9, 13), (14, 10, 14))])
def test_pooling_network_tiles_equal_whole_forward(dims, size, tile) -> None:
    # margin: 2 valid convs (2) + pool + valid conv (1 at half resolution = 2) -> 4 per side;
    # output tile = tile - 8; tiles start on multiples of 2 to keep the pooling grid aligned.
    net = ValidNet(dims).eval()
    x = torch.randn(1, 1, *size)
    margin = [4] * dims
    with torch.no_grad():
        tiled = overlap_tile_inference(x, net, tile, margin, step_multiple=2)
        # whole image: same mirrored border, extended at the end to an even, valid length
        after = [4 + (n % 2) for n in size]
        whole = net(mirror_pad(x, margin, after))[(slice(None), slice(None),
                                                    *(slice(0, n) for n in size))]
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


def test_bad_tile_is_reported() -> None:
    with pytest.raises(ValueError, match="larger tile"):
        overlap_tile_inference(torch.zeros(1, 1, 10, 10), ValidNet(), (9, 9), (4, 4),
                               step_multiple=2)
    with pytest.raises(ValueError, match="expected"):
        overlap_tile_inference(torch.zeros(1, 1, 10, 10), ValidNet(pool=False), (9, 9), (3, 3))
