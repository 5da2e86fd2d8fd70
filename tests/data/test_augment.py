"""Batched augmentation: identity, alignment, label preservation, determinism, 2-D and 3-D."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import ndimage

from unetkit.config import AugmentConfig
from unetkit.data import augment_intensity as intensity
from unetkit.data import augment_spatial as spatial
from unetkit.data.augment import Augmenter

OFF = dict(flip_prob=0, rot90_prob=0, affine_prob=0, elastic_prob=0, gamma_prob=0,
           brightness_contrast_prob=0, noise_prob=0, blur_prob=0, lowres_prob=0)
SPATIAL = {"flip_prob": 0.5, "rot90_prob": 0.5, "affine_prob": 1.0, "elastic_prob": 1.0}
SHAPES = {2: (4, 2, 24, 20), 3: (2, 1, 12, 14, 10)}
LABELS = {0, 1, 2, 255}


def _config(**on):
    return AugmentConfig(**{**OFF, **on})


def _smooth_batch(shape, seed=0, sigma=2.0):
    """Smooth random images and a 4-label mask computed from them (255 = an ignore value)."""
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.standard_normal(shape), [0, 0] + [sigma] * (len(shape) - 2))
    image = torch.from_numpy(image / image.std()).float()
    first = image[:, 0]
    mask = torch.where(first > 0.8, 2, (first > 0).long())
    mask[first < -1.2] = 255
    return image, mask


@pytest.mark.parametrize("dims", [2, 3])
def test_all_probabilities_zero_is_identity(dims):
    image, mask = _smooth_batch(SHAPES[dims])
    out, out_mask = Augmenter(_config(), dims)(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(out, image) and torch.equal(out_mask, mask)
    disabled = Augmenter(AugmentConfig(enabled=False), dims)
    assert disabled(image, mask)[0] is image


@pytest.mark.parametrize("dims", [2, 3])
def test_identity_parameters_give_identity(dims):
    image, mask = _smooth_batch(SHAPES[dims])
    batch = image.shape[0]
    augmenter = Augmenter(_config(), dims)
    params = augmenter.draw(image.shape, torch.Generator().manual_seed(0))
    ones, zeros = torch.ones(batch, dtype=torch.bool), torch.zeros(batch)
    params = replace(
        params, affine=ones, angles=torch.zeros_like(params.angles), scales=torch.ones(batch),
        elastic=ones, elastic_noise=torch.zeros(batch, dims, *[2] * dims),
        noise=ones, noise_std=zeros, noise_values=torch.randn(image.shape),
        blur=ones, blur_sigma=zeros, brightness_contrast=ones, brightness=zeros,
        contrast=torch.ones(batch), lowres=ones, lowres_scale=torch.ones(batch),
        gamma=ones, gamma_value=torch.ones(batch))
    out, out_mask = augmenter.apply(image, mask, params)
    torch.testing.assert_close(out, image, atol=2e-5, rtol=0)
    assert torch.equal(out_mask, mask)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("transform", ["flip", "rot90", "affine", "elastic", "gamma",
                                       "brightness_contrast", "noise", "blur", "lowres", "all",
                                       "all_linear"])
def test_mask_values_stay_in_label_set(dims, transform):
    image, mask = _smooth_batch(SHAPES[dims])
    on = {**{k: 1.0 for k in OFF}, "rot90_prob": 0.7} if transform.startswith("all") \
        else {f"{transform}_prob": 1.0}
    if transform == "all_linear":
        on["mask_interpolation"] = "linear"
    out, out_mask = Augmenter(_config(**on), dims)(image, mask, torch.Generator().manual_seed(3))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out_mask.dtype == torch.int64 and out_mask.shape == mask.shape
    assert set(out_mask.unique().tolist()) <= LABELS
    assert torch.isfinite(out).all()
    assert torch.equal(image, _smooth_batch(SHAPES[dims])[0])  # input untouched


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_image_and_mask_stay_aligned(dims, padding):
    """A mask computed from the image, transformed both ways, still agrees with the image."""
    shape = (2, 1, 48, 40) if dims == 2 else (1, 1, 24, 28, 20)
    image, _ = _smooth_batch(shape, seed=5, sigma=4.0)
    mask = (image[:, 0] > 0).long()
    image = torch.cat([image, torch.ones_like(image)], dim=1)  # channel 1 marks the inside
    augmenter = Augmenter(_config(**SPATIAL, elastic_alpha=3.0, elastic_sigma=12.0,
                                  padding_mode=padding), dims)
    out, out_mask = augmenter(image, mask, torch.Generator().manual_seed(1))
    inside = out[:, 1] > 0.999  # sampled from inside the patch (zero padding blends at edges)
    assert inside.float().mean() > 0.5

    def agreement(labels):
        return ((out[:, 0] > 0).long() == labels)[inside].float().mean().item()

    assert agreement(out_mask) > 0.97
    for axis in range(1, dims + 1):  # one voxel off is clearly worse
        assert agreement(torch.roll(out_mask, 1, dims=axis)) < agreement(out_mask) - 0.02
    assert not torch.equal(out_mask, mask)  # something happened


@pytest.mark.parametrize("dims", [2, 3])
def test_same_seed_same_batch(dims):
    image, mask = _smooth_batch(SHAPES[dims])
    augmenter = Augmenter(AugmentConfig(noise_prob=1.0, elastic_prob=1.0), dims)
    first = augmenter(image, mask, torch.Generator().manual_seed(42))
    second = augmenter(image, mask, torch.Generator().manual_seed(42))
    other = augmenter(image, mask, torch.Generator().manual_seed(43))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("dims", [2, 3])
def test_resampled_flips_and_rot90_equal_index_permutation(dims):
    """The grid_sample path (flip/rot90 folded into the matrix) equals torch.flip / rot90."""
    shape = (3, 2, 9, 9) if dims == 2 else (3, 1, 7, 7, 7)
    image, mask = _smooth_batch(shape)
    augmenter = Augmenter(_config(), dims)
    params = augmenter.draw(image.shape, torch.Generator().manual_seed(0))
    flips = torch.tensor([[True] + [False] * (dims - 1), [False] * (dims - 1) + [True],
                          [True] * dims])
    params = replace(params, flips=flips, rot_k=torch.tensor([1, 2, 3]),
                     rot_plane=torch.tensor([0, len(params.planes) - 1, 0]))
    by_index = augmenter.apply(image, mask, params)
    resampled = augmenter.apply(image, mask, replace(
        params, affine=torch.ones(3, dtype=torch.bool), angles=torch.zeros_like(params.angles),
        scales=torch.ones(3)))
    torch.testing.assert_close(resampled[0], by_index[0], atol=1e-5, rtol=0)
    assert torch.equal(resampled[1], by_index[1])
    plane = params.planes[0]
    expected = torch.rot90(torch.flip(mask[0], [0]), 1, dims=plane)
    assert torch.equal(by_index[1][0], expected)


def _affine_only(image, angles, scales, dims):
    matrix = spatial.affine_matrix(angles, scales, image.shape[2:])
    grid = spatial.sampling_grid(matrix, image.shape[2:])
    return spatial.resample(image, None, grid, "zeros")[0]


def test_rotation_by_90_degrees_matches_rot90_2d_and_3d():
    image = torch.randn(1, 1, 7, 7)
    out = _affine_only(image, torch.tensor([[math.pi / 2]]), torch.ones(1), 2)
    torch.testing.assert_close(out, torch.rot90(image, -1, dims=(2, 3)), atol=1e-5, rtol=0)
    volume = torch.randn(1, 1, 5, 5, 5)
    for axis, plane in enumerate([(3, 4), (4, 2), (2, 3)]):
        angles = torch.zeros(1, 3)
        angles[0, axis] = math.pi / 2
        out = _affine_only(volume, angles, torch.ones(1), 3)
        torch.testing.assert_close(out, torch.rot90(volume, -1, dims=plane), atol=1e-5, rtol=0)


def test_scaling_zooms_about_the_centre_of_a_non_square_patch():
    height, width = 9, 15
    ramp = torch.arange(width, dtype=torch.float32).repeat(1, 1, height, 1)
    out = _affine_only(ramp, torch.zeros(1, 1), torch.tensor([2.0]), 2)
    centre = (width - 1) / 2
    expected = centre + (torch.arange(width) - centre) / 2.0
    torch.testing.assert_close(out[0, 0, 4], expected, atol=1e-5, rtol=0)
    rows = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1).expand(1, 1, height,
                                                                              width)
    out = _affine_only(rows.contiguous(), torch.zeros(1, 1), torch.tensor([2.0]), 2)
    expected_rows = 4 + (torch.arange(height) - 4) / 2.0
    torch.testing.assert_close(out[0, 0, :, 7], expected_rows, atol=1e-5, rtol=0)


def test_elastic_displacement_units_are_voxels():
    """Constant control-point displacements of alpha move every voxel by alpha voxels."""
    height, width, alpha = 11, 17, 2.0
    ramp = torch.arange(width, dtype=torch.float32).repeat(1, 1, height, 1)
    for axis, profile in ((1, ramp), (0, ramp.transpose(2, 3).contiguous())):
        control = torch.zeros(1, 2, 3, 4)
        control[:, axis] = alpha
        shape = profile.shape[2:]
        grid = spatial.interpolated_grid(torch.eye(2)[None], shape, control[..., :4])
        out = spatial.resample(profile, None, grid, "border")[0]
        line = out[0, 0, 5, :8] if axis == 1 else out[0, 0, :8, 5]
        torch.testing.assert_close(line, torch.arange(8.0) + alpha, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_control_grid_interpolation(dims):
    """Knot values are hit exactly; an affine map is reproduced exactly between the knots."""
    shape = (33, 25) if dims == 2 else (17, 13, 9)
    knots = (5, 4) if dims == 2 else (3, 4, 5)
    matrix = spatial.affine_matrix(torch.rand(2, 1 if dims == 2 else 3),
                                   torch.tensor([0.9, 1.2]), shape)
    affine = spatial.interpolated_grid(matrix, shape, torch.zeros(2, dims, *knots))
    torch.testing.assert_close(affine, spatial.sampling_grid(matrix, shape), atol=1e-5, rtol=0)
    noise = torch.randn(2, dims, *knots, generator=torch.Generator().manual_seed(0))
    eye = torch.eye(dims).repeat(2, 1, 1)
    field = spatial.interpolated_grid(eye, shape, noise) - spatial.sampling_grid(eye, shape)
    steps = [(s - 1) // (k - 1) for s, k in zip(shape, knots, strict=True)]
    at_knots = field[(slice(None), *[slice(None, None, st) for st in steps])]
    half = torch.tensor([(s - 1) / 2 for s in shape]).flip(0)
    torch.testing.assert_close(at_knots * half, noise.flip(1).movedim(1, -1), atol=1e-4, rtol=0)
    assert spatial.control_grid((33, 33), 8.0) == (5, 5)


def test_intensity_functions_against_hand_values():
    x = torch.linspace(0, 1, 5).view(1, 1, 5, 1).repeat(2, 1, 1, 3)
    squared = intensity.gamma(x * 4 + 1, torch.tensor([2.0, 1.0]))  # range [1, 5] kept
    torch.testing.assert_close(squared[0, 0, :, 0], 1 + 4 * torch.linspace(0, 1, 5) ** 2)
    torch.testing.assert_close(squared[1], x[1] * 4 + 1)
    out = intensity.brightness_contrast(x, torch.tensor([0.1, 0.0]), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(out[0, 0, :, 0], (torch.linspace(0, 1, 5) - 0.5) * 2 + 0.6)
    torch.testing.assert_close(out[1, 0, :, 0], (torch.linspace(0, 1, 5) - 0.5) * 0.5 + 0.5)
    noise = torch.ones_like(x)
    torch.testing.assert_close(intensity.gaussian_noise(x, torch.tensor([0.5, 0.0]), noise),
                               x + torch.tensor([0.5, 0.0]).view(2, 1, 1, 1))
    blocks = torch.arange(4.0).view(1, 1, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(intensity.low_resolution(blocks, torch.tensor([0.5]))[0, 0, 1:3, 1],
                               torch.tensor([0.75, 1.75]))  # 2r + c at r = 0.25, 0.75; c = 0.25


@pytest.mark.parametrize("dims", [2, 3])
def test_gaussian_blur_matches_scipy(dims):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1) + (12,) * dims).astype(np.float32)
    sigmas = torch.tensor([0.7, 1.3])
    out = intensity.gaussian_blur(torch.from_numpy(x), sigmas).numpy()
    radius = math.ceil(3 * 1.3)
    for b, sigma in enumerate(sigmas.tolist()):
        ref = ndimage.gaussian_filter(x[b, 0], sigma, mode="nearest", truncate=radius / sigma)
        np.testing.assert_allclose(out[b, 0], ref, atol=1e-4)


def test_shapes_and_errors():
    augmenter = Augmenter(AugmentConfig(), 2)
    with pytest.raises(ValueError, match="spatial_dims"):
        Augmenter(AugmentConfig(), 4)
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        augmenter(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="mask shape"):
        augmenter(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long))
    out, none = augmenter(torch.zeros(2, 1, 8, 8), None, None)
    assert out.shape == (2, 1, 8, 8) and none is None


def test_rot90_skips_non_square_planes():
    augmenter = Augmenter(_config(rot90_prob=1.0), 3)
    params = augmenter.draw((2, 1, 6, 8, 8), torch.Generator().manual_seed(0))
    assert params.planes == [(1, 2)]
    image = torch.randn(2, 1, 6, 8, 10)
    assert torch.equal(augmenter(image, None, torch.Generator().manual_seed(0))[0], image)
    assert F.mse_loss(image, image) == 0


@pytest.mark.parametrize("dims", [2, 3])
def test_flip_axes_limit_which_axes_are_flipped(dims):
    image, mask = _smooth_batch(SHAPES[dims])
    generator = torch.Generator().manual_seed(0)
    only_last = Augmenter(_config(flip_prob=1.0, flip_axes=[dims - 1]), dims)
    out, out_mask = only_last(image, mask, generator)
    assert torch.equal(out, image.flip(-1)) and torch.equal(out_mask, mask.flip(-1))
    none = Augmenter(_config(flip_prob=1.0, flip_axes=[]), dims)
    assert torch.equal(none(image, mask, generator)[0], image)
    every = Augmenter(_config(flip_prob=1.0), dims)(image, mask, generator)[0]
    assert torch.equal(every, image.flip(list(range(2, dims + 2))))


def test_flip_axes_errors_name_the_field():
    with pytest.raises(ValueError, match="flip_axes"):
        AugmentConfig(flip_axes=[0, 0])
    with pytest.raises(ValueError, match="flip_axes"):
        AugmentConfig(flip_axes=[3])
    image, mask = _smooth_batch(SHAPES[2])
    with pytest.raises(ValueError, match=r"flip_axes \[2\]: a 2D patch has axes 0..1"):
        Augmenter(_config(flip_prob=1.0, flip_axes=[2]), 2)(image, mask)


def test_padding_mode_fills_rotated_corners_from_the_config():
    from unetkit.config import Config
    from unetkit.train.builders import build_augmenter

    image = torch.ones(1, 1, 32, 32)
    mask = torch.ones(1, 32, 32, dtype=torch.long)
    rotate = dict(affine_prob=1.0, rotation_degrees=45.0, scale_range=(1.0, 1.0))
    config = Config()
    for mode, corner in (("zeros", 0.0), ("reflection", 1.0), ("border", 1.0)):
        augment = config.data.augment.model_copy(update={**OFF, **rotate, "padding_mode": mode})
        config = config.model_copy(update={"data": config.data.model_copy(
            update={"augment": augment})})
        augmenter = build_augmenter(config)
        assert augmenter.padding_mode == mode
        out, out_mask = augmenter(image, mask, torch.Generator().manual_seed(1))
        assert out[0, 0, 0, 0].item() == pytest.approx(corner)  # a corner sees outside
        assert out_mask[0, 0, 0].item() == int(corner)
        assert out[0, 0, 16, 16].item() == pytest.approx(1.0)


@pytest.mark.parametrize("dims", [2, 3])
def test_linear_mask_interpolation_keeps_edges_where_the_image_has_them(dims):
    """Image = the mask's indicator: linear masks equal the resampled image thresholded at 0.5;
    nearest masks snap edges up to half a voxel away from it."""
    shape = (2, 1, 40, 36) if dims == 2 else (1, 1, 20, 24, 18)
    _, mask = _smooth_batch(shape, seed=2, sigma=3.0)
    mask = (mask > 0).long()
    image = mask[:, None].float()
    spatial_on = dict(affine_prob=1.0, elastic_prob=1.0, elastic_alpha=2.0, elastic_sigma=10.0)
    results = {}
    for mode in ("linear", "nearest"):
        # zeros would blend with the outside
        augmenter = Augmenter(_config(**spatial_on, mask_interpolation=mode,
                                      padding_mode="border"), dims)
        out, out_mask = augmenter(image, mask, torch.Generator().manual_seed(4))
        results[mode] = (out_mask == (out[:, 0] > 0.5).long()).float().mean().item()
        assert set(out_mask.unique().tolist()) <= {0, 1}
    assert results["linear"] == 1.0
    assert results["nearest"] < 0.995


def test_linear_mask_interpolation_of_several_labels_by_hand():
    """Half-voxel shift of [0, 0, 5, 5, 9]: the most covered label, ties to the smaller."""
    mask = torch.tensor([[[0, 0, 5, 5, 9]] * 3])
    grid_x = torch.linspace(-1, 1, 5) + 0.25  # half a voxel (step 0.5) to the right
    grid = torch.stack([grid_x.expand(3, 5), torch.linspace(-1, 1, 3)[:, None].expand(3, 5)],
                       -1)[None]
    _, linear = spatial.resample(mask[:, None].float(), mask, grid, "border", "linear")
    assert linear[0, 0].tolist() == [0, 0, 5, 5, 9]  # each tie (0|5, 5|9) keeps the smaller
    shifted = grid.clone()
    shifted[..., 0] += 0.1  # 0.7 voxel: the right neighbour covers more
    _, linear = spatial.resample(mask[:, None].float(), mask, shifted, "border", "linear")
    assert linear[0, 0].tolist() == [0, 5, 5, 9, 9]
    with pytest.raises(ValueError, match="mask_mode"):
        spatial.resample(mask[:, None].float(), mask, grid, "zeros", "cubic")
