"""Normalisation schemes against hand-computed values; state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import NormalizationConfig
from unetkit.data.normalization import Normalizer

RNG = np.random.default_rng(0)


def test_zscore_per_image_and_channel():
    image = np.stack([RNG.normal(5, 2, (8, 9)), RNG.normal(-3, 0.5, (8, 9))]).astype(np.float32)
    out = Normalizer("zscore")(image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)
    expected = (image[1] - image[1].mean()) / image[1].std()
    np.testing.assert_allclose(out[1], expected, rtol=1e-4, atol=1e-5)


def test_constant_image_gives_zeros_not_nan():
    out = Normalizer("zscore")(np.full((1, 4, 4), 7.0))
    assert np.all(out == 0)


def test_torch_and_batched_agree_with_numpy():
    images = RNG.normal(3, 2, (3, 2, 6, 7)).astype(np.float32)
    norm = Normalizer("zscore")
    batched = norm(torch.from_numpy(images), batched=True)
    assert isinstance(batched, torch.Tensor)
    for b in range(3):
        np.testing.assert_allclose(batched[b].numpy(), norm(images[b]), rtol=1e-5, atol=1e-5)


def test_dataset_zscore_uses_fitted_statistics():
    a, b = np.full((1, 2, 2), 1.0), np.full((1, 2, 2), 3.0)
    norm = Normalizer.from_config(NormalizationConfig(scheme="zscore_dataset")).fit([a, b])
    assert norm.stats["mean"] == [2.0] and norm.stats["std"] == [1.0]
    np.testing.assert_allclose(norm(np.array([[[5.0]]])), [[[3.0]]])


def test_ct_scheme_clips_to_foreground_percentiles():
    image = np.arange(101, dtype=np.float32).reshape(1, 101, 1)  # values 0..100
    mask = np.zeros((101, 1), np.int64)
    mask[50:] = 1  # foreground holds 50..100
    norm = Normalizer("ct", percentiles=(10, 90)).fit([image], [mask])
    low, high = np.percentile(np.arange(50, 101), [10, 90])
    assert norm.stats["low"] == [pytest.approx(low)] and norm.stats["high"] == [pytest.approx(high)]
    clipped = np.clip(np.arange(50, 101), low, high)
    assert norm.stats["mean"][0] == pytest.approx(clipped.mean())
    out = norm(np.array([[[-1000.0]], [[1000.0]]]).reshape(1, 2, 1))
    expected = (np.array([low, high]) - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-5)


def test_window_and_minmax():
    norm = Normalizer.from_config(NormalizationConfig(scheme="window", window=(-100, 300)))
    out = norm(np.array([[[-500.0, -100.0, 100.0, 300.0, 900.0]]]))
    np.testing.assert_allclose(out.ravel(), [0, 0, 0.5, 1, 1], atol=1e-6)
    out = Normalizer("minmax")(np.array([[[2.0, 4.0, 6.0]], [[0.0, 0.0, 10.0]]]))
    np.testing.assert_allclose(out[:, 0], [[0, 0.5, 1], [0, 0, 1]], atol=1e-6)


def test_state_dict_round_trip_and_errors():
    norm = Normalizer("ct").fit([RNG.normal(0, 100, (2, 10, 10))])
    state = norm.state_dict()
    import json

    restored = Normalizer.from_state_dict(json.loads(json.dumps(state)))
    image = RNG.normal(0, 100, (2, 5, 5))
    np.testing.assert_array_equal(restored(image), norm(image))
    with pytest.raises(RuntimeError, match="fit"):
        Normalizer("zscore_dataset")(image)
    with pytest.raises(ValueError, match="scheme 'nope'"):
        Normalizer("nope")
    with pytest.raises(ValueError, match="window"):
        Normalizer("window")
    assert Normalizer("none")(np.array([[[1, 2]]], np.uint8)).dtype == np.float32
