"""CLAHE contrast equalisation (``unetkit.data.contrast``) and its place in the Preprocessor."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from skimage.exposure import equalize_adapthist

from unetkit.config import DataConfig
from unetkit.data.contrast import equalize
from unetkit.data.preprocessing import Preprocessor


def _fundus_like(seed: int = 0) -> np.ndarray:
    """(3, 96, 128) uint8: illumination falling from left to right, dark vertical lines."""
    rng = np.random.default_rng(seed)
    light = np.linspace(200, 40, 128)[None, :] * np.ones((96, 1))
    image = light * (1 + 0.03 * rng.normal(size=(96, 128)))
    for col in (10, 60, 115):  # "vessels": 30% darker than their surroundings
        image[:, col:col + 2] *= 0.7
    return np.stack([image, 0.8 * image, 0.5 * image]).clip(0, 255).astype(np.uint8)


def test_equalize_matches_skimage_per_channel_on_the_unit_range():
    image = _fundus_like()
    out = equalize(image, clip=0.02)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    for c in range(3):
        channel = image[c].astype(np.float64)
        unit = (channel - channel.min()) / (channel.max() - channel.min())
        np.testing.assert_allclose(out[c], equalize_adapthist(unit, clip_limit=0.02), atol=1e-6)


def test_equalize_evens_out_the_contrast_of_dim_and_bright_structures():
    image = _fundus_like()[0].astype(np.float64)
    out = equalize(image[None], clip=0.03)[0]

    def contrast(a: np.ndarray, col: int) -> float:  # line against its neighbours, per range
        return float((a[:, col + 4:col + 6].mean() - a[:, col:col + 2].mean()) / np.ptp(a))

    before = contrast(image, 115) / contrast(image, 10)
    after = contrast(out, 115) / contrast(out, 10)
    assert before < 0.3  # the dim line has under a third of the bright one's contrast
    assert after > 2.5 * before  # equalised: far closer (0.22 -> 0.69 here)


def test_equalize_ignores_the_intensity_scale_and_constant_channels():
    image = _fundus_like()[:1].astype(np.float32)
    np.testing.assert_allclose(equalize(2.5 * image + 7), equalize(image), atol=1e-5)
    flat = np.full((2, 8, 8), 3.0)
    assert not equalize(flat).any()
    with pytest.raises(ValueError, match="clip limit"):
        equalize(image, clip=0)


def test_preprocessor_applies_clahe_before_the_zscore():
    image = _fundus_like()
    plain = Preprocessor.from_config(DataConfig())
    clahe = Preprocessor.from_config(DataConfig(normalization={"contrast": "clahe",
                                                              "clahe_clip": 0.03}))
    assert plain.clahe_clip is None and clahe.clahe_clip == 0.03
    x, record = clahe.preprocess(image)
    expected = equalize(image, 0.03)
    axes = (1, 2)
    expected = (expected - expected.mean(axes, keepdims=True)) / (
        expected.std(axes, keepdims=True) + 1e-8)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert record.shape == record.grid == (96, 128)
    assert not np.allclose(plain.preprocess(image)[0], x, atol=0.1)


def test_config_rejects_unknown_contrast_and_bad_clip():
    with pytest.raises(ValidationError, match="contrast"):
        DataConfig(normalization={"contrast": "histeq"})
    with pytest.raises(ValidationError, match="clahe_clip"):
        DataConfig(normalization={"contrast": "clahe", "clahe_clip": 0})
