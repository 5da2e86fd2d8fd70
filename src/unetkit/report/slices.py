"""Which 2-D slice of a volume a picture shows, and how it is turned for display.

The slice goes through the largest connected structure of the ground truth (of the prediction
when there is no ground truth or it is empty), where that structure's cross-section is largest.

Orientation: with an affine (voxel -> world RAS+, as NIfTI, NRRD, MHA and DICOM give it,
``Geometry.affine``) the slice is axial (the array axis closest to superior-inferior) and shown
in the radiological convention: the patient's right on the image's left, anterior at the top,
whatever order and direction the array axes are stored in (``nibabel.orientations
.io_orientation``). Without an affine (NumPy, TIFF stacks) the orientation is unknown: the last
array axis is sliced and the slice is shown as stored, array axis 0 down the rows and axis 1
along the columns, and the caption says "array axis".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """How a volume is cut and shown: the sliced array ``axis``, the array axes shown down the
    rows and along the columns, whether each is reversed, and the plane's name."""

    axis: int = 2
    rows: int = 0
    cols: int = 1
    flip_rows: bool = False
    flip_cols: bool = False
    name: str = "array axis"


def radiological_view(affine: np.ndarray | None) -> View:
    """The axial ``View`` of a 3-D array with ``affine`` in the radiological convention; the
    stored layout (``View()``: last axis sliced, no flips) when ``affine`` is None or
    degenerate."""
    if affine is None:
        return View()
    from nibabel.orientations import io_orientation

    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return View()
    ornt = io_orientation(affine)  # per array axis: its RAS axis and direction
    if np.isnan(ornt).any():  # a degenerate affine says nothing about orientation
        return View()
    by_world = {int(world): axis for axis, (world, _) in enumerate(ornt)}
    rows, cols, through = by_world[1], by_world[0], by_world[2]
    # Column 0 is the patient's right (largest R), row 0 the most anterior (largest A): reverse
    # an array axis whose index grows towards R (columns) or towards A (rows).
    return View(axis=through, rows=rows, cols=cols, flip_rows=bool(ornt[rows, 1] > 0),
                flip_cols=bool(ornt[cols, 1] > 0), name="axial")


def largest_structure(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity) of ``mask > 0``, boolean."""
    from scipy import ndimage

    components, count = ndimage.label(mask > 0)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(sizes.argmax())


def pick_slice(labels: np.ndarray, gt: np.ndarray | None = None, axis: int = -1) -> int:
    """The index along ``axis`` through the largest ground-truth structure (the largest
    predicted one when ``gt`` is None or empty), where its cross-section is largest; the
    middle slice when both are empty."""
    reference = gt if gt is not None and np.any(gt > 0) else labels
    structure = largest_structure(reference)
    axis = axis % structure.ndim
    counts = np.moveaxis(structure, axis, -1).reshape(-1, structure.shape[axis]).sum(0)
    return int(counts.argmax()) if counts.any() else structure.shape[axis] // 2


def cut(volume: np.ndarray, view: View, index: int) -> np.ndarray:
    """Slice ``index`` of a 3-D ``volume`` along ``view.axis``, turned for display
    ``(rows, cols)``."""
    plane = np.take(volume, index, axis=view.axis)
    kept = [a for a in range(3) if a != view.axis]  # plane's axes, in array order
    plane = np.transpose(plane, (kept.index(view.rows), kept.index(view.cols)))
    if view.flip_rows:
        plane = plane[::-1]
    if view.flip_cols:
        plane = plane[:, ::-1]
    return np.ascontiguousarray(plane)


def display_planes(grey: np.ndarray, labels: np.ndarray, gt: np.ndarray | None,
                   affine: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """The 2-D planes to draw and a caption naming the slice ("" for 2-D inputs).

    Args:
        grey: ``(*spatial)`` intensities.
        labels: ``(*spatial)`` prediction.
        gt: ``(*spatial)`` ground truth or None.
        affine: the volume's voxel -> RAS+ affine, or None.
    """
    if labels.ndim != 3:
        return grey, labels, gt, ""
    view = radiological_view(affine)
    index = pick_slice(labels, gt, axis=view.axis)
    planes: list[np.ndarray | None] = [cut(a, view, index) if a is not None else None
                                       for a in (grey, labels, gt)]
    last = labels.shape[view.axis] - 1
    if view.name == "axial":
        caption = (f"axial slice {index} of 0..{last} (array axis {view.axis}), patient's "
                   "right on the left")
    else:
        caption = (f"slice {index} of 0..{last} along array axis {view.axis} (no orientation "
                   "known: shown as stored)")
    return planes[0], planes[1], planes[2], caption
