"""NIfTI (nibabel) and DICOM / NRRD / MHA (SimpleITK, the optional ``unetkit[dicom]`` extra).

Arrays are channel-first ``(C, X, Y[, Z])`` in nibabel's axis order; SimpleITK's ``(Z, Y, X)``
arrays are transposed to it, and its LPS direction/origin are turned into a RAS+ affine, so a
volume read from any of these formats has the same array layout, spacing order and affine.
"""

from __future__ import annotations

import contextlib
import locale
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from unetkit.data.geometry import Geometry, check_voxels

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_INSTALL_HINT = "install the optional extra: pip install 'unetkit[dicom]'"


def _import_sitk(path: Path):  # noqa: ANN202 - returns the module
    try:
        import SimpleITK as sitk  # noqa: N813
    except ImportError as error:
        raise ImportError(f"{path}: reading DICOM/NRRD/MHA needs SimpleITK; {_INSTALL_HINT}") \
            from error
    return sitk


def looks_like_dicom_dir(path: Path) -> bool:
    """A folder whose files are DICOM (``.dcm`` suffix or the ``DICM`` magic at byte 128)."""
    for child in sorted(path.iterdir())[:5]:
        if child.is_file():
            if child.suffix.lower() == ".dcm":
                return True
            with open(child, "rb") as handle:
                handle.seek(128)
                if handle.read(4) == b"DICM":
                    return True
    return False


def read_nifti(path: Path, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    """NIfTI -> ``(C, X, Y[, Z])`` in the stored dtype, spacing from the header zooms; the
    header's shape is checked before the data is read (``check_voxels``)."""
    import nibabel as nib

    image = nib.load(str(path))
    check_voxels(path, tuple(image.shape), max_voxels)
    array = np.asarray(image.dataobj)
    if array.ndim == 5 and array.shape[3] == 1:
        array = array[:, :, :, 0]
    if array.ndim == 4:
        array = np.moveaxis(array, -1, 0)
    elif array.ndim in (2, 3):
        array = array[None]
    else:
        raise ValueError(f"{path}: NIfTI with shape {array.shape} is not a 2-D/3-D image")
    spatial = array.ndim - 1
    spacing = tuple(float(z) for z in image.header.get_zooms()[:spatial])
    extra = {"dtype": str(array.dtype), "channels": array.shape[0]}
    return np.ascontiguousarray(array), Geometry(
        spacing=spacing, affine=np.asarray(image.affine, dtype=np.float64), format="nifti",
        extra=extra)


def write_nifti(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    """``(C, X, Y[, Z])`` -> NIfTI with ``geometry.affine`` (or a diagonal one from spacing)."""
    import nibabel as nib

    spatial = array.ndim - 1
    affine = geometry.affine
    if affine is None:
        affine = np.diag([*geometry.spacing, *([1.0] * (3 - spatial)), 1.0])
    data = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if data.dtype == np.int64:
        data = data.astype(np.int32)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    zooms = list(geometry.spacing)[: data.ndim] + [1.0] * max(0, data.ndim - spatial)
    image.header.set_zooms(zooms[: data.ndim])
    image.header.set_data_dtype(data.dtype)
    nib.save(image, str(path))


@contextlib.contextmanager
def keep_locale() -> Iterator[None]:
    """Restore the C locale settings after SimpleITK: its DICOM (GDCM) code switches them to
    "C", after which Python opens text files as ASCII and any non-ASCII text fails to read."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_sitk(path: Path, dicom: bool, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    """DICOM series folder (or one ``.dcm``), NRRD or MHA -> ``(C, X, Y[, Z])`` plus RAS affine;
    the headers' sizes are checked before any pixel is read (``check_voxels``)."""
    with keep_locale():
        return _read_sitk(path, dicom, max_voxels)


def _declared_shape(sitk, files: list[str]) -> tuple[int, ...]:  # noqa: ANN001 - the module
    """Components x size of the first file's header, times the number of files (a series)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()
    size = tuple(reader.GetSize())
    return (reader.GetNumberOfComponents(), *size) + ((len(files),) if len(files) > 1 else ())


def _read_sitk(path: Path, dicom: bool, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    sitk = _import_sitk(path)
    if dicom and path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ValueError(f"{path}: no DICOM series found in this folder")
        if len(series) > 1:
            raise ValueError(f"{path}: {len(series)} DICOM series in one folder; keep one per case")
        files = list(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        check_voxels(path, _declared_shape(sitk, files), max_voxels)
        reader.SetFileNames(files)
        image = reader.Execute()
    else:
        check_voxels(path, _declared_shape(sitk, [str(path)]), max_voxels)
        image = sitk.ReadImage(str(path))
    dims = image.GetDimension()
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, components])
    array = np.moveaxis(array, -1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else array[None]
    array = np.ascontiguousarray(np.transpose(array, (0, *range(array.ndim - 1, 0, -1))))
    spacing = tuple(float(s) for s in image.GetSpacing())
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dims, dims)
    affine = np.eye(4)
    affine[:dims, :dims] = direction * np.asarray(spacing)[None, :]
    affine[:dims, 3] = image.GetOrigin()
    fmt = "dicom" if dicom else path.suffix.lower().lstrip(".")
    extra = {"dtype": str(array.dtype), "channels": array.shape[0]}
    return array, Geometry(spacing=spacing, affine=_LPS_TO_RAS @ affine, format=fmt, extra=extra)


def write_sitk(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    """``(C, X, Y[, Z])`` -> NRRD/MHA with spacing, origin and direction from the geometry."""
    sitk = _import_sitk(path)
    spatial = array.ndim - 1
    order = tuple(range(spatial, 0, -1))
    if array.shape[0] == 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array[0], [
            o - 1 for o in order])))
    else:
        data = np.transpose(array, (*order, 0))
        image = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=True)
    image.SetSpacing([float(s) for s in geometry.spacing])
    if geometry.affine is not None:
        lps = _LPS_TO_RAS @ np.asarray(geometry.affine, dtype=np.float64)
        matrix = lps[:spatial, :spatial] / np.asarray(geometry.spacing)[None, :]
        image.SetDirection(matrix.flatten().tolist())
        image.SetOrigin(lps[:spatial, 3].tolist())
    with keep_locale():
        sitk.WriteImage(image, str(path), useCompression=True)
