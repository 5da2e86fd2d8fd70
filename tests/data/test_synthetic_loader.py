"""Synthetic data sets (exact ground truth), checked by the doctor and loaded as cases."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from unetkit.data.dataset import discover_cases, load_case
from unetkit.data.doctor import check_dataset
from unetkit.data.normalization import Normalizer
from unetkit.data.synthetic import make_blobs_3d, make_cells, write_cells_dataset


def test_cells_look_like_em_membranes():
    image, mask = make_cells((128, 160), seed=3)
    assert image.shape == (1, 128, 160) and image.dtype == np.float32
    assert mask.shape == (128, 160) and mask.dtype == np.int64
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert 0.1 < mask.mean() < 0.35  # membranes are a minority, as in ISBI 2012 (~23%)
    assert image[0][mask == 1].mean() < image[0][mask == 0].mean() - 0.25  # dark membranes
    # membranes are 2-4 px thin: three erosions remove (almost) all of them, one does not
    membrane = mask == 1
    assert ndimage.binary_erosion(membrane, iterations=3).sum() < 0.02 * membrane.sum()
    assert ndimage.binary_erosion(membrane, iterations=1).sum() > 0.2 * membrane.sum()
    # cells are closed: the background splits into many separate cells
    assert ndimage.label(mask == 0)[1] > 10


def test_cells_are_deterministic_and_multiclass():
    a, b = make_cells((64, 64), seed=1), make_cells((64, 64), seed=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], make_cells((64, 64), seed=2)[0])
    image, mask = make_cells((128, 128), seed=1, multiclass=True)
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    binary = make_cells((128, 128), seed=1)[1]
    np.testing.assert_array_equal(mask == 1, binary == 1)


def test_blobs_3d():
    image, mask = make_blobs_3d((20, 24, 16), seed=0, num_classes=3)
    assert image.shape == (1, 20, 24, 16) and mask.shape == (20, 24, 16)
    assert set(np.unique(mask).tolist()) == {0, 1, 2}
    assert image[0][mask > 0].mean() > image[0][mask == 0].mean() + 0.2


def test_written_dataset_passes_the_doctor_and_loads(tmp_path):
    root = write_cells_dataset(tmp_path / "cells", n_cases=3, size=(48, 64), seed=2)
    report = check_dataset(root)
    assert report.ok, report.errors
    assert report.warnings == []
    cases = discover_cases(root)
    image, mask, _ = load_case(cases[1], labels=[0, 1])
    expected_image, expected_mask = make_cells((48, 64), seed=2 * 100_003 + 1)
    np.testing.assert_array_equal(mask, expected_mask)
    raw = np.round(expected_image * 255)
    np.testing.assert_allclose(Normalizer("zscore")(image), (raw - raw.mean()) / raw.std(),
                               atol=1e-4)
