"""The ``Geometry`` record that travels with every array read from disk, and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ImageFormatError(ValueError):
    """A file cannot be read or written as asked; the message names the file."""


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


def split_suffix(path: str | Path) -> tuple[str, str]:
    """``case_01.nii.gz`` -> ``("case_01", ".nii.gz")``; suffix lower-cased."""
    name = Path(path).name
    lower = name.lower()
    for double in (".nii.gz",):
        if lower.endswith(double):
            return name[: -len(double)], double
    suffix = Path(name).suffix
    return name[: len(name) - len(suffix)], suffix.lower()
