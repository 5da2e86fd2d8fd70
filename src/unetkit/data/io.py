"""Read and write images and masks as channel-first numpy arrays plus a ``Geometry`` record.

Conventions (``docs/data.md``):

* ``read_image`` returns ``(C, *spatial)``: a grey PNG is ``(1, H, W)``, an RGB PNG ``(3, H, W)``,
  a multi-page TIFF ``(1, Z, H, W)``, a NIfTI volume ``(1, X, Y, Z)`` in nibabel's axis order
  (4-D NIfTI: the 4th axis becomes the channel axis).  DICOM / NRRD / MHA volumes (SimpleITK) are
  transposed to the same ``(X, Y, Z)`` order so that ``Geometry.spacing[i]`` belongs to array axis
  ``i`` for every format.  Affines are voxel -> RAS+ world (nibabel's convention).
* ``read_mask`` returns ``(*spatial)`` integers.  A binary mask stored as {0, 255} is converted to
  {0, 1}; the returned geometry says so (``extra["scaled_255"]``: callers decide whether to
  warn).  RGB masks are mapped through ``palette`` or rejected.
* No tensors here and no augmentation; DICOM/NRRD/MHA live in ``io_medical`` (optional extras).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data import io_formats, io_medical
from unetkit.data.geometry import Geometry, ImageFormatError, split_suffix

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy", ".npz")
__all__ = ["Geometry", "ImageFormatError", "is_supported", "read_image", "read_mask",
           "split_suffix", "write_image", "write_mask"]

# The most values (all channels) one file may declare: ~1.07e9, 4 GiB as float32, above any
# image unetkit can train or predict on in memory; a header asking for more is refused before
# decoding (decompression bombs). Pillow refuses 2-D images over 2 x PIL.Image.MAX_IMAGE_PIXELS
# (~358 million pixels) itself.
MAX_VOXELS = 2**30

SUPPORTED_SUFFIXES = (
    PIL_SUFFIXES + TIFF_SUFFIXES + NUMPY_SUFFIXES + io_medical.NIFTI_SUFFIXES
    + io_medical.SITK_SUFFIXES + (".dcm",)
)


def is_supported(path: str | Path) -> bool:
    """True for a file with a supported suffix or a folder holding a DICOM series."""
    path = Path(path)
    if path.is_dir():
        return io_medical.looks_like_dicom_dir(path)
    return split_suffix(path)[1] in SUPPORTED_SUFFIXES


def read_image(path: str | Path, max_voxels: int | None = None) -> tuple[np.ndarray, Geometry]:
    """Read an image as a channel-first array ``(C, *spatial)`` in its stored dtype.

    Args:
        max_voxels: the most values (all channels) a file may declare; its header is read
            first, and a larger file is refused before decoding. None: ``MAX_VOXELS``.

    Raises:
        ImageFormatError: unknown suffix, unreadable file, or a header declaring more than
            ``max_voxels`` values (the message names the file).
        ImportError: DICOM/NRRD/MHA without the ``unetkit[dicom]`` extra.
    """
    path = Path(path)
    if not path.exists():
        raise ImageFormatError(f"{path}: file not found")
    suffix = split_suffix(path)[1]
    limit = MAX_VOXELS if max_voxels is None else max_voxels
    try:
        if path.is_dir() or suffix == ".dcm":
            return io_medical.read_sitk(path, dicom=True, max_voxels=limit)
        if suffix in PIL_SUFFIXES:
            return io_formats.read_pil(path, keep_palette=False, max_voxels=limit)
        if suffix in TIFF_SUFFIXES:
            return io_formats.read_tiff(path, limit)
        if suffix in NUMPY_SUFFIXES:
            return io_formats.read_numpy(path, limit)
        if suffix in io_medical.NIFTI_SUFFIXES:
            return io_medical.read_nifti(path, limit)
        if suffix in io_medical.SITK_SUFFIXES:
            return io_medical.read_sitk(path, dicom=False, max_voxels=limit)
    except (ImageFormatError, ImportError):
        raise
    except Exception as error:  # decoders raise many types for corrupt files
        raise ImageFormatError(f"{path}: cannot read ({type(error).__name__}: {error})") from error
    raise ImageFormatError(
        f"{path}: unsupported suffix {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def read_mask(
    path: str | Path, palette: dict[tuple[int, int, int], int] | None = None,
    max_voxels: int | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Read a label mask as an integer array ``(*spatial)``.

    A {0, 255} mask becomes {0, 1} (``geometry.extra["scaled_255"]`` is set).  A palette PNG
    gives its palette indices.
    A colour mask needs ``palette`` (RGB tuple -> label); a grey mask stored as RGB is accepted.

    Raises:
        ImageFormatError: colour mask without (or not matching) ``palette``, non-integer values,
            more than one channel that is not RGB, or too large (``read_image``'s
            ``max_voxels``).
    """
    path = Path(path)
    if split_suffix(path)[1] == ".png" and path.is_file():
        limit = MAX_VOXELS if max_voxels is None else max_voxels
        try:
            array, geometry = io_formats.read_pil(path, keep_palette=True, max_voxels=limit)
        except ImageFormatError:
            raise
        except Exception as error:  # Pillow raises many types for corrupt files
            raise ImageFormatError(f"{path}: cannot read ({type(error).__name__}: "
                                   f"{error})") from error
    else:
        array, geometry = read_image(path, max_voxels)
    if array.shape[0] >= 3 and geometry.extra.get("rgb", array.shape[0] in (3, 4)):
        array = _rgb_to_labels(array[:3], palette, path)
    elif array.shape[0] != 1:
        raise ImageFormatError(f"{path}: a mask needs one channel, found {array.shape[0]}")
    else:
        array = array[0]
    labels = _as_integer_labels(array, path)
    values = np.unique(labels)
    if values.size == 2 and values[0] == 0 and values[1] == 255:
        labels = (labels == 255).astype(np.uint8)
        geometry.extra["scaled_255"] = True
    return labels, geometry


def write_image(path: str | Path, array: np.ndarray, geometry: Geometry | None = None) -> Path:
    """Write a channel-first array ``(C, *spatial)`` in the format its suffix names.

    ``geometry`` (spacing, affine) is written where the format can hold it.

    Raises:
        ImageFormatError: unsupported suffix or shape, or a geometry whose spacing has another
            number of spatial axes than the array (or whose affine is not 4x4): a 2-D label map
            written with a 3-D image's geometry would be a volume one slice thick.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ImageFormatError(f"{path}: expected (C, *spatial) with 2 or 3 spatial axes, "
                               f"got shape {array.shape}")
    spatial = array.ndim - 1
    geometry = geometry or Geometry(spacing=(1.0,) * spatial)
    _check_geometry(path, array.shape[1:], geometry)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = split_suffix(path)[1]
    if suffix in PIL_SUFFIXES:
        io_formats.write_pil(path, array)
    elif suffix in TIFF_SUFFIXES:
        io_formats.write_tiff(path, array, geometry)
    elif suffix in NUMPY_SUFFIXES:
        io_formats.write_numpy(path, array, geometry)
    elif suffix in io_medical.NIFTI_SUFFIXES:
        io_medical.write_nifti(path, array, geometry)
    elif suffix in io_medical.SITK_SUFFIXES:
        io_medical.write_sitk(path, array, geometry)
    else:
        raise ImageFormatError(f"{path}: cannot write suffix {suffix!r} (DICOM is read-only; "
                               "write .nii.gz to keep the geometry)")
    return path


def write_mask(
    path: str | Path, labels: np.ndarray, geometry: Geometry | None = None,
    png_values: str = "labels",
) -> Path:
    """Write an integer label map ``(*spatial)`` with ``geometry``, format from the suffix.

    Args:
        png_values: for PNG/JPEG/BMP/TIFF 2-D masks: ``"labels"`` writes 0..K-1 as uint8;
            ``"255"`` writes a binary mask as 0/255 (e.g. the ISBI 2012 convention).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or not np.all(labels == np.round(labels))):
        raise ImageFormatError(f"{path}: mask values must be non-negative integers")
    top = int(labels.max()) if labels.size else 0
    if png_values == "255":
        if top > 1:
            raise ImageFormatError(f"{path}: png_values='255' needs a binary mask, max is {top}")
        labels = labels.astype(np.uint8) * 255
    elif png_values != "labels":
        raise ValueError(f"png_values must be 'labels' or '255', got {png_values!r}")
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32
    return write_image(path, labels.astype(dtype)[None], geometry)


def _check_geometry(path: Path, shape: tuple[int, ...], geometry: Geometry) -> None:
    """The geometry must describe an array of ``shape`` (spatial axes only)."""
    axes = len(geometry.spacing)
    if axes != len(shape):
        raise ImageFormatError(
            f"{path}: the geometry has {axes} spatial axes (spacing {tuple(geometry.spacing)}) "
            f"but the array has {len(shape)} (spatial shape {tuple(shape)}); write it with the "
            f"geometry of an image of the same axes, or Geometry(spacing={(1.0,) * len(shape)})")
    if geometry.affine is not None and np.shape(geometry.affine) != (4, 4):
        raise ImageFormatError(f"{path}: the geometry's affine has shape "
                               f"{np.shape(geometry.affine)}; expected 4x4 (voxel -> RAS+ world)")


def _rgb_to_labels(
    rgb: np.ndarray, palette: dict[tuple[int, int, int], int] | None, path: Path
) -> np.ndarray:
    """(3, *spatial) colours -> labels through ``palette``; a grey RGB is taken as is."""
    if np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[0], rgb[2]):
        return rgb[0]
    colours = np.unique(rgb.reshape(3, -1).T, axis=0)
    if palette is None:
        shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours[:6])
        raise ImageFormatError(
            f"{path}: colour (RGB) mask with {len(colours)} colours ({shown}...); pass a palette "
            "mapping each RGB colour to a label, or save the mask as grey label values")
    out = np.zeros(rgb.shape[1:], dtype=np.int64)
    matched = np.zeros(rgb.shape[1:], dtype=bool)
    for colour, label in palette.items():
        hit = np.all(rgb == np.asarray(colour, dtype=rgb.dtype).reshape(3, *[1] * (rgb.ndim - 1)),
                     axis=0)
        out[hit] = label
        matched |= hit
    if not matched.all():
        extra = {tuple(int(v) for v in c) for c in rgb[:, ~matched].T[:5]}
        raise ImageFormatError(f"{path}: colours {sorted(extra)} are not in the palette")
    return out


def _as_integer_labels(array: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array.astype(np.uint8) if array.dtype == bool else array
    if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
        raise ImageFormatError(f"{path}: mask has non-integer values (interpolated or "
                               "probability map?); save integer labels")
    return array.astype(np.int64)


