"""Regions of interest (ROI): the pixels a case is trained and scored on.

A region of interest is a binary file on its image's grid, nonzero inside: DRIVE's circular field
of view, a body outline, a scanned area. ``unetkit.data.dataset`` pairs the files with the images
(``Case.roi_path``; ``roi/`` or ``fov/`` in the data folder, or ``data.roi_dir``); this module
reads them, marks what lies outside in a training mask with ``ROI_IGNORE`` (the loss ignores that
label, ``train.loss.ignore_index``), and holds the doctor's checks of ROI files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.dataset import Case, DatasetError
from unetkit.data.geometry import Geometry, geometry_mismatch, unreadable
from unetkit.data.io import read_mask

ROI_IGNORE = 255  # the label of training-mask pixels outside the region of interest


def read_roi(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """A region of interest as a bool array ``(*spatial)`` (nonzero = inside) and its geometry.

    Raises:
        ImageFormatError: unreadable, or not a one-channel (or grey RGB) integer image.
    """
    values, geometry = read_mask(path)
    return values != 0, geometry


def load_roi(case: Case, shape: tuple[int, ...]) -> np.ndarray | None:
    """The case's region of interest ``(*spatial)`` bool, checked against the image ``shape``;
    None when the case has none.

    Raises:
        DatasetError: unreadable file, or a shape other than the image's (names the file).
    """
    if case.roi_path is None:
        return None
    try:
        roi, _ = read_roi(case.roi_path)
    except (ValueError, ImportError, OSError) as error:
        raise DatasetError(unreadable(case.roi_path, "region of interest", error)) from None
    if roi.shape != tuple(shape):
        raise DatasetError(f"{case.roi_path}: region of interest shape {roi.shape} differs from "
                           f"image shape {tuple(shape)} ({case.image_paths[0].name})")
    return roi


def mark_outside(mask: np.ndarray, roi: np.ndarray | None, ignore: int = ROI_IGNORE
                 ) -> np.ndarray:
    """A copy of the label map ``mask`` with ``ignore`` outside ``roi`` (``mask`` if None)."""
    if roi is None:
        return mask
    out = np.array(mask, copy=True)
    out[~np.asarray(roi, bool)] = ignore
    return out


def check_roi(case: Case, shape: tuple[int, ...], geometry: Geometry, mask: np.ndarray | None,
              report: Any) -> None:
    """The doctor's checks of one case's ROI file; appends to ``report.errors`` / ``.warnings``.

    Errors: unreadable, shape or geometry other than the image's, more than two values.
    Warnings: an empty region, mask foreground outside the region (ignored in training and
    scoring).
    """
    path = case.roi_path
    assert path is not None
    try:
        values, roi_geometry = read_mask(path)
    except (ValueError, ImportError, OSError) as error:
        report.errors.append(unreadable(path, "region of interest", error))
        return
    if values.shape != tuple(shape):
        report.errors.append(f"{path}: region of interest shape {values.shape} differs from "
                             f"image shape {tuple(shape)} ({case.image_paths[0].name})")
        return
    mismatch = geometry_mismatch(path, roi_geometry, case.image_paths[0], geometry)
    if mismatch:
        report.errors.append(mismatch)
    held = np.unique(values)
    if held.size > 2:
        shown = ", ".join(map(str, held[:6].tolist())) + (", ..." if held.size > 6 else "")
        report.errors.append(f"{path}: region of interest holds {held.size} values ({shown}); "
                             "it must be binary (nonzero = inside): re-save it without smoothing "
                             "or interpolation")
        return
    inside = values != 0
    if not inside.any():
        report.warnings.append(f"{path}: region of interest is empty; the case adds nothing to "
                               "training or scoring")
    # one text for every file, so that the doctor groups them
    if mask is not None and mask.shape == inside.shape and np.any((mask != 0) & ~inside):
        report.warnings.append(f"{path}: the mask has foreground outside the region of "
                               "interest; training and scoring ignore it")
