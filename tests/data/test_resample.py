"""Resampling to a target spacing and back: sizes, values, labels, and the predictor's round trip
that gives every input its own shape, spacing and affine back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import DataConfig
from unetkit.data.preprocessing import Preprocessor
from unetkit.data.resample import (
    needs_resampling,
    resample_image,
    resample_labels,
    resampled_shape,
)


def test_resampled_shape_keeps_the_physical_extent():
    assert resampled_shape((10, 20, 5), (1.0, 0.5, 4.0), (1.0, 1.0, 1.0)) == (10, 10, 20)
    assert resampled_shape((7, 9), (1.5, 1.0), (None, 2.0)) == (7, 4)  # None keeps an axis
    assert not needs_resampling((1.0, 1.0), None)
    assert not needs_resampling((1.0, 1.0004), (1.0, 1.0))
    assert needs_resampling((1.0, 2.0), (1.0, 1.0))


def test_linear_ramps_survive_resampling_and_sizes_round_trip():
    ramp = np.arange(16, dtype=np.float32)[None, :, None] * np.ones((1, 16, 6), np.float32)
    fine = resample_image(ramp, (32, 6))
    assert fine.shape == (1, 32, 6) and fine.dtype == np.float32
    # align_corners=False: new voxel j sits at (j + 0.5) / 2 - 0.5 of the old axis
    inner = fine[0, 2:-2, 0]
    expected = (np.arange(32)[2:-2] + 0.5) / 2 - 0.5
    np.testing.assert_allclose(inner, expected, atol=1e-5)
    back = resample_image(fine, (16, 6))
    np.testing.assert_allclose(back[0, 1:-1], ramp[0, 1:-1], atol=1e-5)
    tensor = resample_image(torch.from_numpy(ramp), (8, 3))
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (1, 8, 3)


def test_labels_resampled_on_one_hot_keep_values_and_thin_structures():
    labels = np.zeros((20, 20), np.int64)
    labels[5:15, 5:15] = 7
    labels[9:11, :] = 3  # a two-voxel band crossing everything
    down = resample_labels(labels, (10, 10))
    assert set(np.unique(down)) <= {0, 3, 7}
    assert (down == 3).any(axis=1).sum() >= 1  # the band survives halving
    up = resample_labels(labels, (40, 40))
    assert set(np.unique(up)) == {0, 3, 7}
    np.testing.assert_array_equal(resample_labels(up, (20, 20)), labels)
    assert resample_labels(labels, (20, 20)) is labels  # same grid: untouched


def test_preprocessor_round_trip_restores_the_input_grid():
    config = DataConfig(target_spacing=[1.0, 1.0, 1.0], normalization={"scheme": "none"})
    pre = Preprocessor.from_config(config)
    image = np.random.default_rng(0).normal(size=(1, 12, 10, 7)).astype(np.float32)
    x, record = pre.preprocess(image, spacing=(2.0, 1.0, 1.5))
    assert x.shape == (1, 24, 10, 10) and record.shape == (12, 10, 7)
    assert record.grid == (24, 10, 10)
    scores = torch.randn(3, *record.grid)
    restored = pre.restore(scores, record)
    assert restored.shape == (3, 12, 10, 7) and restored.dtype == torch.float32
    labels = pre.restore(np.zeros(record.grid, np.uint8), record)
    assert labels.shape == (12, 10, 7) and labels.dtype == np.uint8
    same, same_record = pre.preprocess(image, spacing=(1.0, 1.0, 1.0))
    assert same.shape == image.shape and same_record.grid == same_record.shape
    with pytest.raises(ValueError, match="does not belong"):
        pre.restore(torch.zeros(3, 5, 5, 5), record)


def test_predicted_masks_keep_shape_spacing_and_affine(tmp_path, make_checkpoint):
    import nibabel as nib

    from unetkit.infer.files import predict_files
    from unetkit.infer.predictor import Predictor

    path = make_checkpoint(spatial_dims=3, out_channels=3,
                           data={"target_spacing": [1.0, 1.0, 1.0]})
    affine = np.array([[0.0, -2.0, 0.0, 10.0], [1.5, 0.0, 0.0, -4.0], [0.0, 0.0, 0.7, 3.0],
                       [0.0, 0.0, 0.0, 1.0]])
    image = np.random.default_rng(1).normal(size=(9, 7, 13)).astype(np.float32)
    source = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), source)
    predictor = Predictor.from_checkpoint(path)
    x, record = predictor.preprocess(image[None], spacing=(1.5, 2.0, 0.7))
    assert tuple(x.shape[1:]) == (14, 14, 9)  # the network works at 1 mm
    result = predict_files(predictor, [source], tmp_path / "out", save_probabilities=True)
    assert not result.failed
    written = nib.load(str(result.written[0]))
    assert written.shape == image.shape
    direct = predictor.predict(source)  # reads the spacing from the file, as predict_files must
    np.testing.assert_array_equal(np.asarray(written.dataobj), direct.labels)
    unresampled = predictor.predict(image[None], spacing=(1.0, 1.0, 1.0))
    assert not np.allclose(unresampled.probabilities, direct.probabilities)  # spacing matters
    np.testing.assert_allclose(written.affine, affine)
    np.testing.assert_allclose(written.header.get_zooms()[:3], (1.5, 2.0, 0.7))
    probabilities = nib.load(str(tmp_path / "out" / "probabilities" / "scan.nii.gz"))
    assert probabilities.shape == (*image.shape, 3)
