"""Round trips for every format: values, dtype, spacing and affine preserved."""

from __future__ import annotations

import locale
import logging
import sys

import numpy as np
import pytest

from unetkit.data import io
from unetkit.data.io import (
    Geometry,
    ImageFormatError,
    read_image,
    read_mask,
    write_image,
    write_mask,
)

RNG = np.random.default_rng(0)
AFFINE = np.array([[0.0, -0.9, 0.0, 10.0], [0.8, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _roundtrip(tmp_path, name, array, geometry=None):
    path = write_image(tmp_path / name, array, geometry)
    return read_image(path)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
@pytest.mark.parametrize("channels", [1, 3])
def test_2d_uint8_roundtrip(tmp_path, suffix, channels):
    array = RNG.integers(0, 256, (channels, 13, 17), dtype=np.uint8)
    back, geometry = _roundtrip(tmp_path, f"a{suffix}", array)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)
    assert geometry.spacing == (1.0, 1.0)
    assert geometry.extra["rgb"] == (channels == 3)


def test_png_uint16_and_jpeg_is_lossy_but_shaped(tmp_path):
    array = RNG.integers(0, 65536, (1, 9, 11), dtype=np.uint16)
    back, _ = _roundtrip(tmp_path, "a.png", array)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, array)
    smooth = np.tile(np.arange(16, dtype=np.uint8) * 10, (3, 16, 1))
    back, geometry = _roundtrip(tmp_path, "b.jpg", smooth)
    assert back.shape == (3, 16, 16) and geometry.format == "jpeg"
    assert np.abs(back.astype(int) - smooth).max() < 20


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16])
def test_tiff_3d_multipage_keeps_dtype_and_spacing(tmp_path, dtype):
    array = (RNG.random((1, 4, 6, 5)) * 1000).astype(dtype)
    geometry = Geometry(spacing=(2.5, 0.5, 0.75))
    back, geom = _roundtrip(tmp_path, "v.tif", array, geometry)
    assert back.dtype == dtype and back.shape == (1, 4, 6, 5)
    np.testing.assert_array_equal(back, array)
    assert geom.spacing == (2.5, 0.5, 0.75) and geom.format == "tiff"


def test_tiff_multichannel_3d(tmp_path):
    array = RNG.random((2, 3, 4, 5)).astype(np.float32)
    back, geom = _roundtrip(tmp_path, "v.tif", array, Geometry(spacing=(1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(back, array)
    assert geom.spacing == (1.0, 2.0, 3.0)


def test_foreign_tiff_stack_and_rgb(tmp_path):
    import tifffile

    stack = RNG.integers(0, 255, (5, 7, 8), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True,
                     metadata={"spacing": 3.0, "axes": "ZYX"})
    back, geom = read_image(tmp_path / "stack.tif")
    assert back.shape == (1, 5, 7, 8) and geom.spacing[0] == pytest.approx(3.0)
    rgb = RNG.integers(0, 255, (7, 8, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    back, geom = read_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(back, np.moveaxis(rgb, -1, 0))
    assert geom.extra["rgb"]


@pytest.mark.parametrize("shape", [(1, 6, 7), (1, 4, 5, 6), (2, 4, 5, 6)])
def test_npy_roundtrip(tmp_path, shape):
    array = RNG.standard_normal(shape).astype(np.float64)
    back, geom = _roundtrip(tmp_path, "a.npy", array)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.float64 and geom.spatial_dims == len(shape) - 1


def test_npy_multichannel_2d_is_refused(tmp_path):
    with pytest.raises(ImageFormatError, match=r"a\.npy.*npz"):
        write_image(tmp_path / "a.npy", np.zeros((3, 4, 5), np.float32))


@pytest.mark.parametrize("shape", [(3, 6, 7), (1, 4, 5, 6)])
def test_npz_roundtrip_with_geometry(tmp_path, shape):
    array = RNG.integers(-100, 100, shape).astype(np.int32)
    spacing = tuple(float(s) for s in range(2, 2 + len(shape) - 1))
    affine = AFFINE if len(shape) == 4 else None
    back, geom = _roundtrip(tmp_path, "a.npz", array, Geometry(spacing=spacing, affine=affine))
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.int32 and geom.spacing == spacing
    if affine is not None:
        np.testing.assert_allclose(geom.affine, affine)
    else:
        assert geom.affine is None


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_nifti_roundtrip_keeps_affine_spacing_dtype(tmp_path, suffix, dtype):
    array = (RNG.random((1, 5, 6, 4)) * 100).astype(dtype)
    geometry = Geometry(spacing=(0.8, 0.9, 2.5), affine=AFFINE, format="nifti")
    back, geom = _roundtrip(tmp_path, f"a{suffix}", array, geometry)
    assert back.dtype == dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(geom.affine, AFFINE)
    np.testing.assert_allclose(geom.spacing, (0.8, 0.9, 2.5), rtol=1e-6)


def test_nifti_axis_order_is_nibabel_order(tmp_path):
    import nibabel as nib

    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), tmp_path / "x.nii.gz")
    back, geom = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(back[0], data)
    assert geom.spacing == (1.0, 2.0, 3.0)


def test_nifti_multichannel(tmp_path):
    array = RNG.random((2, 4, 5, 3)).astype(np.float32)
    back, _ = _roundtrip(tmp_path, "m.nii.gz", array, Geometry(spacing=(1.0, 1.0, 1.0)))
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_sitk_roundtrip_keeps_affine(tmp_path, suffix):
    array = (RNG.random((1, 5, 6, 4)) * 100).astype(np.int16)
    geometry = Geometry(spacing=(0.8, 0.9, 2.5), affine=AFFINE)
    back, geom = _roundtrip(tmp_path, f"a{suffix}", array, geometry)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == np.int16
    np.testing.assert_allclose(geom.spacing, (0.8, 0.9, 2.5), rtol=1e-6)
    np.testing.assert_allclose(geom.affine, AFFINE, atol=1e-6)


def test_sitk_and_nifti_agree_on_axes(tmp_path):
    """The same volume written as NIfTI and read via SimpleITK gives the same array and affine."""
    import SimpleITK as sitk

    array = (RNG.random((1, 5, 6, 4)) * 100).astype(np.int16)
    write_image(tmp_path / "a.nii.gz", array, Geometry(spacing=(0.8, 0.9, 2.5), affine=AFFINE))
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "a.nii.gz")), str(tmp_path / "a.mha"))
    back, geom = read_image(tmp_path / "a.mha")
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(geom.affine, AFFINE, atol=1e-5)


def _write_dicom_series(folder, volume_zyx, spacing_xyz):
    import SimpleITK as sitk

    from unetkit.data.io_medical import keep_locale

    # SimpleITK's DICOM writer leaves the process in the "C" locale (Python then reads and
    # decodes text as ASCII in every later test): put the locale back
    with keep_locale():
        _write_slices(sitk, folder, volume_zyx, spacing_xyz)


def _write_slices(sitk, folder, volume_zyx, spacing_xyz):
    folder.mkdir()
    image = sitk.GetImageFromArray(volume_zyx)
    image.SetSpacing(spacing_xyz)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume_zyx.shape[0]):
        slice_image = image[:, :, z]
        slice_image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        slice_image.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint(
            (0, 0, z)))))
        slice_image.SetMetaData("0020|0013", str(z))
        slice_image.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
        slice_image.SetMetaData("0028|0030", f"{spacing_xyz[1]}\\{spacing_xyz[0]}")
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_folder(tmp_path):

    volume = (RNG.random((4, 6, 5)) * 1000).astype(np.int16)  # (Z, Y, X)
    _write_dicom_series(tmp_path / "series", volume, (0.7, 0.8, 2.0))
    before = locale.getpreferredencoding(False)
    back, geom = read_image(tmp_path / "series")
    assert locale.getpreferredencoding(False) == before  # text files still read as before
    assert geom.format == "dicom"
    np.testing.assert_array_equal(back[0], np.transpose(volume, (2, 1, 0)))
    np.testing.assert_allclose(geom.spacing, (0.7, 0.8, 2.0), rtol=1e-5)
    assert io.is_supported(tmp_path / "series")


def test_missing_extra_names_the_install(tmp_path, monkeypatch):
    write_image(tmp_path / "a.nii.gz", np.zeros((1, 2, 3, 4), np.int16))
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    (tmp_path / "a.mha").write_bytes(b"junk")
    with pytest.raises(ImportError, match=r"a\.mha.*unetkit\[dicom\]"):
        read_image(tmp_path / "a.mha")


def test_unknown_and_corrupt_files_name_the_file(tmp_path):
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(ImageFormatError, match=r"a\.xyz.*unsupported"):
        read_image(tmp_path / "a.xyz")
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(ImageFormatError, match=r"b\.png.*cannot read"):
        read_image(tmp_path / "b.png")
    with pytest.raises(ImageFormatError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_read_mask_converts_0_255_and_says_so(tmp_path, caplog):
    mask = np.zeros((8, 9), np.uint8)
    mask[2:5, 3:7] = 255
    write_image(tmp_path / "m.png", mask[None])
    with caplog.at_level(logging.DEBUG, logger="unetkit"):
        labels, geometry = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(labels, mask // 255)
    assert geometry.extra["scaled_255"] is True  # the fact is returned ...
    assert caplog.text == ""  # ... not logged: callers decide whether to warn


def test_isbi_masks_load_as_0_1():
    from pathlib import Path

    root = Path("/work/shared/data/isbi2012/train")
    if not root.is_dir():
        pytest.skip("ISBI 2012 data not present on this machine")
    image, geom = read_image(root / "images" / "00.png")
    assert image.shape == (1, 512, 512) and image.dtype == np.uint8
    labels, _ = read_mask(root / "masks" / "00.png")
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert 0.15 < labels.mean() < 0.3  # membrane is ~23% of the pixels


@pytest.mark.parametrize("suffix", [".png", ".tif", ".nii.gz", ".npy", ".nrrd"])
def test_write_mask_in_the_image_geometry(tmp_path, suffix):
    spatial = (6, 7) if suffix in (".png", ".tif") else (6, 7, 3)
    labels = RNG.integers(0, 3, spatial)
    affine = AFFINE if len(spatial) == 3 else None
    spacing = (0.8, 0.9, 2.5)[: len(spatial)]  # the affine's column norms
    geometry = Geometry(spacing=spacing, affine=affine)
    path = write_mask(tmp_path / f"m{suffix}", labels, geometry)
    back, geom = read_mask(path)
    np.testing.assert_array_equal(back, labels)
    assert np.issubdtype(back.dtype, np.integer)
    if suffix in (".nii.gz", ".nrrd"):
        np.testing.assert_allclose(geom.affine, AFFINE, atol=1e-6)
        np.testing.assert_allclose(geom.spacing, geometry.spacing, rtol=1e-6)


def test_write_mask_png_255(tmp_path):
    labels = np.array([[0, 1], [1, 0]])
    write_mask(tmp_path / "m.png", labels, png_values="255")
    from PIL import Image

    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "m.png")), labels * 255)
    with pytest.raises(ImageFormatError, match="binary"):
        write_mask(tmp_path / "n.png", labels * 2, png_values="255")


def test_rgb_mask_palette_or_error(tmp_path):
    colours = np.zeros((3, 4, 4), np.uint8)
    colours[0, :2] = 255  # red top half
    colours[2, 2:] = 255  # blue bottom half
    write_image(tmp_path / "rgb.png", colours)
    with pytest.raises(ImageFormatError, match=r"rgb\.png.*colour.*palette"):
        read_mask(tmp_path / "rgb.png")
    labels, _ = read_mask(tmp_path / "rgb.png", palette={(255, 0, 0): 1, (0, 0, 255): 2})
    np.testing.assert_array_equal(labels, np.repeat([1, 1, 2, 2], 4).reshape(4, 4))
    grey = np.repeat(np.array([[[0, 1], [2, 1]]], np.uint8), 3, axis=0)
    write_image(tmp_path / "grey.png", grey)
    np.testing.assert_array_equal(read_mask(tmp_path / "grey.png")[0], grey[0])


def test_palette_png_mask_gives_indices(tmp_path):
    from PIL import Image

    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png")[0], indices)


def test_float_mask_with_fractions_is_refused(tmp_path):
    np.save(tmp_path / "m.npy", np.array([[0.0, 0.5], [1.0, 1.0]]))
    with pytest.raises(ImageFormatError, match=r"m\.npy.*non-integer"):
        read_mask(tmp_path / "m.npy")


@pytest.mark.parametrize("compression", ["lzw", "zlib", "packbits", "zstd", "lzma", "jpeg"])
def test_compressed_tiffs_read_as_distributed(tmp_path, compression):
    """DRIVE ships LZW-compressed RGB TIFFs; every common TIFF compression reads (imagecodecs)."""
    import tifffile

    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 36, 3)) * 255).astype(np.uint8)
    rgb[:, :18] = 50  # flat areas survive JPEG's loss
    path = tmp_path / f"photo_{compression}.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression=compression)
    image, geometry = read_image(path)
    assert image.shape == (3, 40, 36) and geometry.extra["rgb"]
    if compression == "jpeg":
        assert np.abs(image[:, :, :8].astype(int) - 50).max() <= 3  # away from the edge
    else:
        np.testing.assert_array_equal(image, np.moveaxis(rgb, -1, 0))


def test_gif_masks_read_as_labels(tmp_path):
    from PIL import Image

    mask = np.zeros((20, 24), np.uint8)
    mask[4:9, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "21_manual1.gif")
    labels, geometry = read_mask(tmp_path / "21_manual1.gif")
    np.testing.assert_array_equal(labels, mask // 255)
    assert geometry.extra["scaled_255"]
