"""``write_image`` / ``write_mask`` refuse a geometry made for an array with other axes."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.data.io import (
    Geometry,
    ImageFormatError,
    read_image,
    read_mask,
    write_image,
    write_mask,
)


def _ct_geometry() -> Geometry:
    return Geometry(spacing=(0.8, 0.8, 2.5), affine=np.diag([0.8, 0.8, 2.5, 1.0]), format="nifti")


@pytest.mark.parametrize("suffix", [".nii.gz", ".npz", ".tif", ".nrrd"])
def test_a_2d_mask_with_a_3d_geometry_is_refused_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"pred{suffix}"
    with pytest.raises(ImageFormatError) as caught:
        write_mask(path, np.zeros((12, 10), np.uint8), _ct_geometry())
    message = str(caught.value)
    assert str(path) in message and "3 spatial axes" in message and "has 2" in message
    assert "\n" not in message and not path.exists()


def test_a_3d_image_with_a_2d_geometry_is_refused(tmp_path):
    path = tmp_path / "volume.nii.gz"
    with pytest.raises(ImageFormatError, match=r"volume\.nii\.gz: the geometry has 2 spatial"):
        write_image(path, np.zeros((1, 4, 5, 6), np.float32), Geometry(spacing=(1.0, 1.0)))


def test_an_affine_that_is_not_4x4_is_refused(tmp_path):
    path = tmp_path / "pred.nii.gz"
    with pytest.raises(ImageFormatError, match=r"pred\.nii\.gz: the geometry's affine has shape"):
        write_mask(path, np.zeros((4, 5, 6), np.uint8),
                   Geometry(spacing=(1.0, 1.0, 1.0), affine=np.eye(3)))


def test_a_mask_of_the_image_keeps_its_geometry(tmp_path):
    image = np.arange(4 * 5 * 6, dtype=np.float32).reshape(1, 4, 5, 6)
    write_image(tmp_path / "ct.nii.gz", image, _ct_geometry())
    read, geometry = read_image(tmp_path / "ct.nii.gz")
    write_mask(tmp_path / "mask.nii.gz", (read[0] > 60).astype(np.uint8), geometry)
    mask, back = read_mask(tmp_path / "mask.nii.gz")
    assert mask.shape == (4, 5, 6) and back.spacing == pytest.approx((0.8, 0.8, 2.5))
    np.testing.assert_array_equal(back.affine, geometry.affine)


def test_2d_nifti_and_png_masks_still_write(tmp_path):
    write_mask(tmp_path / "a.png", np.ones((6, 7), np.uint8))
    write_mask(tmp_path / "b.nii.gz", np.ones((6, 7), np.uint8),
               Geometry(spacing=(0.5, 0.5), affine=np.diag([0.5, 0.5, 1.0, 1.0])))
    assert read_mask(tmp_path / "b.nii.gz")[0].shape == (6, 7)
