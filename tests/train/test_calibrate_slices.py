"""infer.threshold auto on a 2D run over the slices of volumes without validation cases: the
training cases calibrate as the volumes ``unetkit predict`` reads, not as their slices."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.synthetic import write_blobs_dataset
from unetkit.train.fit import fit

pytestmark = pytest.mark.slow

SLICES = ["model.spatial_dims=2", "data.slice_axis=0", "data.patch_size=[16, 16]",
          "data.val_fraction=0", "infer.threshold=auto", "train.epochs=1",
          "train.steps_per_epoch=2"]


@pytest.mark.parametrize(("overrides", "source"), [
    ([], "training"),
    (["data.slice_context=1"], "training"),  # 2.5D: each slice with its neighbours
    (["data.calibration_band=0.25"], "held-out band"),
])
def test_a_run_on_slices_calibrates_on_its_training_volumes(tmp_path, tiny_config, overrides,
                                                            source):
    data = write_blobs_dataset(tmp_path / "Dataset003_Blobs", 3, (6, 16, 12), num_classes=2,
                               seed=2)
    result = fit(tiny_config(*SLICES, *overrides), data, tmp_path / "run")
    record = result.calibration
    assert record is not None and record["source"] == source
    assert record["images"] == 3  # the three volumes, not their 18 slices
    assert 0.0 < record["threshold"] < 1.0 and np.isfinite(record["score"])


def test_training_volumes_are_the_sliced_volumes_again(tmp_path, tiny_config):
    from unetkit.train.calibrate import training_volumes
    from unetkit.train.data import prepare_data

    data = write_blobs_dataset(tmp_path / "Dataset003_Blobs", 2, (6, 16, 12), num_classes=2)
    whole = prepare_data(tiny_config("data.val_fraction=0"), data)  # 3D: no slices
    for axis, context in ((0, 0), (2, 1)):
        sliced = prepare_data(tiny_config("data.val_fraction=0", f"data.slice_axis={axis}",
                                          f"data.slice_context={context}"), data)
        assert len(sliced.train_images) == sum(m.shape[axis] for m in whole.train_masks)
        images, masks = training_volumes(sliced, sliced.train_masks, axis, context)
        for got, want in zip(images, whole.train_images, strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(masks, whole.train_masks, strict=True):
            np.testing.assert_array_equal(got, want)
        images, masks = training_volumes(sliced, sliced.train_masks, axis, context, limit=1)
        np.testing.assert_array_equal(images[0], whole.train_images[0])
        assert len(images) == len(masks) == 1
