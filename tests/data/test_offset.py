"""Masks offset from their images: measuring the offset and resampling images by it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unetkit.data.offset import (
    MIN_OFFSET,
    case_offset,
    estimate_offset,
    median_offset,
    shift_image,
)


def blobs(shape, seed=0, sigma=3.0) -> np.ndarray:
    image = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return (image / image.std()).astype(np.float32)


def offset_mask(image: np.ndarray, offset, dark=False) -> np.ndarray:
    """A mask marking image(u + offset): the structure thresholded after shifting by -offset."""
    moved = ndimage.shift(image, [-v for v in offset], order=3, mode="mirror")
    return (moved < -0.5) if dark else (moved > 0.5)


@pytest.mark.parametrize("offset", [(0.6, -0.3), (0.0, 0.0), (-1.3, 0.4)])
def test_case_offset_recovers_a_known_2d_offset(offset):
    image = blobs((96, 80))
    found = case_offset(image[None], offset_mask(image, offset))
    np.testing.assert_allclose(found, offset, atol=0.15)


def test_dark_structures_and_3d():
    image = blobs((40, 36, 44), seed=1, sigma=2.5)
    found = case_offset(image[None], offset_mask(image, (0.0, 0.5, -0.4), dark=True))
    np.testing.assert_allclose(found, (0.0, 0.5, -0.4), atol=0.15)


def test_case_offset_without_contrast_or_room_is_zero():
    image = blobs((40, 40))
    assert case_offset(image[None], np.zeros((40, 40))) == (0.0, 0.0)
    assert case_offset(image[None, :6, :6], offset_mask(image, (0.5, 0))[:6, :6]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        case_offset(image[None], np.zeros((4, 4)))


def test_estimate_takes_the_median_and_ignores_tiny_offsets():
    images = [blobs((80, 80), seed=s) for s in range(3)]
    masks = [offset_mask(img, (0.55, 0.04)) for img in images]
    offset = estimate_offset([img[None] for img in images], masks)
    assert offset[0] == pytest.approx(0.55, abs=0.15)
    assert offset[1] == 0.0  # below MIN_OFFSET
    assert median_offset([[0.5, 0.2], [0.7, -0.05], [0.6, 0.01]]) == [0.6, 0.0]
    assert MIN_OFFSET == 0.1
    with pytest.raises(ValueError, match="at least one image"):
        estimate_offset([], [])


def test_shift_image_moves_content_by_the_offset():
    rows, cols = np.mgrid[:32, :40].astype(np.float32)
    image = np.stack([rows, 2 * cols])  # two channels, linear ramps
    out = shift_image(image, [0.5, -1.25])
    inner = (slice(None), slice(8, -8), slice(8, -8))  # mirrored borders bend the ramps
    np.testing.assert_allclose(out[0][inner[1:]], (rows + 0.5)[inner[1:]], atol=5e-3)
    np.testing.assert_allclose(out[1][inner[1:]], (2 * (cols - 1.25))[inner[1:]], atol=5e-3)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert shift_image(image, None) is image and shift_image(image, [0.0, 0.0]) is image
    with pytest.raises(ValueError, match=r"data.image_offset \[0.5\] needs one value per"):
        shift_image(image, [0.5])


def test_aligned_pairs_measure_no_offset_after_shifting():
    image = blobs((96, 96), seed=3)
    mask = offset_mask(image, (0.7, 0.3))
    offset = estimate_offset([image[None]], [mask])
    assert case_offset(shift_image(image[None], offset), mask) == pytest.approx((0, 0), abs=0.12)


def test_evenly_spaced_case_selection():
    from unetkit.data.dataset import evenly_spaced

    assert evenly_spaced(3, 16) == [0, 1, 2]
    assert evenly_spaced(20, 5) == [0, 5, 10, 14, 19]  # linspace 0, 4.75, 9.5, 14.25, 19 rounded
    assert evenly_spaced(20, 1) == [0]
