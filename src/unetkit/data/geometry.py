"""The ``Geometry`` record that travels with every array read from disk, and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ImageFormatError(ValueError):
    """A file cannot be read or written as asked; the message names the file."""


class DatasetError(ValueError):
    """The data folder is missing, has no recognised layout or holds an inconsistent case
    (``unetkit.data.dataset``)."""


@dataclass
class Geometry:
    """Where an array lives in space and how to write it back.

    Attributes:
        spacing: voxel size per spatial array axis (same order as the array's spatial axes).
        affine: 4x4 voxel -> world (RAS+) matrix, or None for formats without one (PNG, TIFF).
        format: the format the array was read from (``png``, ``tiff``, ``nifti``, ...).
        extra: what is needed to write it back: original ``dtype``, ``channels``, ``rgb``, ...
    """

    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    format: str = "npy"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.spacing)


def unreadable(path: Path, what: str, error: BaseException) -> str:
    """``"<path>: unreadable <what>: <reason>"`` with the reason's own leading ``<path>: `` (the
    readers name the file) left out, so the file is named once."""
    reason = str(error)
    for prefix in (f"{path}: ", f"{path.name}: "):
        reason = reason.removeprefix(prefix)
    return f"{path}: unreadable {what}: {reason}"


def check_voxels(path: Path, shape: tuple[int, ...], limit: int) -> None:
    """Refuse a file whose header declares more than ``limit`` values (all channels), before
    any pixel is decoded: a few hundred bytes of compressed PNG or NIfTI can declare
    60000 x 60000 pixels (a decompression bomb).

    Raises:
        ImageFormatError: naming the file, the declared shape and the limit.
    """
    count = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if count > limit:
        raise ImageFormatError(
            f"{path}: declares {'x'.join(str(int(n)) for n in shape)} = {count:.3g} values, more "
            f"than unetkit reads ({limit:.3g}; unetkit.data.io.MAX_VOXELS); a decompression "
            "bomb or a file too large to hold in memory: refused before decoding")


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``case_01.nii.gz`` -> ``("case_01", ".nii.gz")``; suffix lower-cased."""
    name = Path(path).name
    lower = name.lower()
    for double in (".nii.gz",):
        if lower.endswith(double):
            return name[: -len(double)], double
    suffix = Path(name).suffix
    return name[: len(name) - len(suffix)], suffix.lower()


def format_tuple(values: tuple[float, ...]) -> str:
    """``(0.5, 0.5, 2.0)`` -> ``"0.5x0.5x2"``."""
    return "x".join(f"{v:g}" for v in values)


def geometry_mismatch(path: Path, geometry: Geometry, image_path: Path, image_geometry: Geometry
                      ) -> str | None:
    """The message naming ``path`` when its spacing or affine differ from its image's, or None.

    Masks and regions of interest must lie on their image's grid; the affine (orientation and
    origin) is compared only when both files have one.
    """
    if not np.allclose(geometry.spacing, image_geometry.spacing, rtol=1e-3):
        return (f"{path}: spacing {format_tuple(geometry.spacing)} differs from the image's "
                f"{format_tuple(image_geometry.spacing)} ({image_path.name})")
    if geometry.affine is not None and image_geometry.affine is not None:
        scale = max(1.0, float(np.abs(image_geometry.affine).max()))
        if not np.allclose(geometry.affine, image_geometry.affine, atol=1e-3 * scale):
            return (f"{path}: affine (orientation/origin) differs from the image's "
                    f"({image_path.name})")
    return None


def length_unit(geometry: Geometry) -> str:
    """The unit of ``geometry.spacing``: ``mm`` with an affine (NIfTI, NRRD, MHA, DICOM: their
    standards use millimetres), ``pixels`` / ``voxels`` when none is stored (spacing 1: PNG,
    JPEG, plain NumPy), else ``spacing units`` (a TIFF's resolution states no unit)."""
    if geometry.affine is not None:
        return "mm"
    if all(float(s) == 1.0 for s in geometry.spacing):
        return "pixels" if len(geometry.spacing) == 2 else "voxels"
    return "spacing units"
