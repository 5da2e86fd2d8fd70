"""Augmenting a batch on a device never waits for it: parameters and noise are drawn on the host
and copied without blocking, and no shape depends on the batch's values.

The meta device stands for a GPU (``tests/host_syncs.py``): reading a value there raises;
blocking host-to-device copies and boolean-mask assignments are counted.
``tests/gpu/test_sync_cuda.py`` runs the same under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from tests.host_syncs import META, DeviceWaits

from unetkit.config import AugmentConfig
from unetkit.data import augment_spatial as spatial
from unetkit.data.augment import Augmenter
from unetkit.data.transfer import to_device

EVERY = ("flip", "rot90", "affine", "elastic", "gamma", "brightness_contrast", "noise", "blur",
         "lowres")
SHAPES = {2: (4, 2, 24, 20), 3: (3, 1, 12, 12, 10)}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_a_device_batch_is_augmented_without_waiting(dims, interpolation, padding, monkeypatch):
    waits = DeviceWaits(monkeypatch)
    shape = SHAPES[dims]
    image = torch.empty(shape, device=META)
    mask = torch.empty((shape[0], *shape[2:]), dtype=torch.int64, device=META)
    for probability in (0.5, 1.0):  # some samples (indexed copies) and every sample
        augmenter = Augmenter(AugmentConfig(
            **{f"{name}_prob": probability for name in EVERY},
            mask_interpolation=interpolation, padding_mode=padding), dims)
        for seed in range(6):
            out, out_mask = augmenter(image, mask, torch.Generator().manual_seed(seed))
            assert out.shape == image.shape and out.device == META
            assert out_mask.shape == mask.shape and out_mask.dtype == torch.int64
    # before: 19 generator reads, ~12 blocking copies and a boolean mask per batch on a GPU
    assert waits.count == 0


def test_the_host_draws_are_those_of_a_cpu_batch():
    augmenter = Augmenter(AugmentConfig(noise_prob=1.0, elastic_prob=1.0), 3)
    first = augmenter.draw(SHAPES[3], torch.Generator().manual_seed(7))
    second = augmenter.draw(SHAPES[3], torch.Generator().manual_seed(7))
    for name, value in vars(first).items():
        if isinstance(value, torch.Tensor):
            assert value.device.type == "cpu" and torch.equal(value, vars(second)[name]), name
    assert first.noise_values.shape == (SHAPES[3][0], *SHAPES[3][1:])


def _random_grid(shape, seed, zoom=1.3):
    generator = torch.Generator().manual_seed(seed)
    n = len(shape) - 1
    theta = torch.eye(n, n + 1).repeat(shape[0], 1, 1) * zoom + \
        0.2 * torch.randn(shape[0], n, n + 1, generator=generator)
    return F.affine_grid(theta, [shape[0], 1, *shape[1:]], align_corners=True), generator


@pytest.mark.parametrize("shape", [(3, 17, 23), (2, 9, 12, 10)])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_labels_off_the_cpu_are_the_most_covered_label_as_on_the_cpu(shape, padding):
    """The corner rule (no torch.unique) equals the one-hot rule on grids that zoom out, so
    corners fall outside, are clamped or mirrored."""
    grid, generator = _random_grid(shape, seed=len(shape))
    mask = torch.randint(0, 4, shape, generator=generator)
    mask[mask == 3] = 255  # an ignore value far from the others
    one_hot = spatial._resample_labels_linear(mask, grid, padding)
    corners = spatial._most_covered_corner(mask, grid, padding)
    assert torch.equal(corners, one_hot)
    assert (corners == 255).any() and (corners == 2).any()
    # a fill for what only sees outside (the ignore label of sparse masks): the same on both
    filled = spatial._most_covered_corner(mask, grid, padding, mask_fill=255)
    assert torch.equal(filled, spatial._resample_labels_linear(mask, grid, padding, 255))
    changed = filled != corners  # only voxels that see nothing inside: 0 before, the fill now
    assert bool((corners[changed] == 0).all()) and bool((filled[changed] == 255).all())
    assert bool(changed.any()) == (padding == "zeros")


def test_the_corner_rule_by_hand():
    """Half-voxel shift of [0, 0, 5, 5, 9]: the most covered label, ties to the smaller; a
    voxel that sees only outside (zero padding) is 0."""
    mask = torch.tensor([[[0, 0, 5, 5, 9]] * 3])
    grid_x = torch.linspace(-1, 1, 5) + 0.25  # half a voxel (step 0.5) to the right
    grid = torch.stack([grid_x.expand(3, 5), torch.linspace(-1, 1, 3)[:, None].expand(3, 5)],
                       -1)[None]
    assert spatial._most_covered_corner(mask, grid, "border")[0, 0].tolist() == [0, 0, 5, 5, 9]
    shifted = grid.clone()
    shifted[..., 0] += 0.1  # 0.7 voxel: the right neighbour covers more
    assert spatial._most_covered_corner(mask, shifted, "border")[0, 0].tolist() == \
        [0, 5, 5, 9, 9]
    outside = grid.clone()
    outside[..., 0] += 3.0
    assert spatial._most_covered_corner(mask + 1, outside, "zeros").unique().tolist() == [0]


def test_to_device_queues_the_copy_and_converts_on_the_host(monkeypatch):
    waits = DeviceWaits(monkeypatch)
    values = torch.tensor([0.5, 1.5], dtype=torch.float64)
    moved = to_device(values, META, torch.float16)
    assert moved.device == META and moved.dtype == torch.float16 and waits.count == 0
    assert to_device(values, torch.device("cpu")) is values
