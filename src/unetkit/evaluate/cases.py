"""One case read for scoring: prediction and ground truth as label maps, with background in
both where nothing is scored (outside the region of interest, and on the pixels the ground
truth marks with the ignore label), its spacing, affine and length unit.

``evaluate_folders`` (``unetkit.evaluate.folders``) reads every case through ``load_cases``;
a case that cannot be read is reported and left out, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unetkit.data import io
from unetkit.data.ignore import unscaled
from unetkit.data.roi import read_roi
from unetkit.evaluate.units import spacing_unit

log = logging.getLogger(__name__)


class LoadedCase(NamedTuple):
    """One case read for scoring: prediction and truth (background outside the region of
    interest), the spacing used, the region of interest, the truth's affine and length unit."""

    pred: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]
    roi: np.ndarray | None
    affine: np.ndarray | None
    unit: str


def read_case(pred_path: Path, gt_path: Path, roi_path: Path | None,
               spacing: Sequence[float] | None, ignore: int | None = None) -> LoadedCase:
    """The case with background outside the region of interest and on ignored pixels."""
    pred, _ = io.read_mask(pred_path)
    gt, geometry = io.read_mask(gt_path)
    pred, gt = as_labels(pred), unscaled(as_labels(gt), gt_path, ignore)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    roi = None  # the scored pixels: inside the region of interest and labelled
    if roi_path is not None:
        roi, _ = read_roi(roi_path)
        if roi.shape != gt.shape:
            raise ValueError(f"{roi_path}: region of interest shape {roi.shape} differs from the "
                             f"ground truth's {gt.shape}")
    if ignore is not None and (gt == ignore).any():
        roi = (gt != ignore) if roi is None else roi & (gt != ignore)
    if roi is not None:  # neither true nor false anything outside: background in both
        pred, gt = np.where(roi, pred, 0), np.where(roi, gt, 0)
    return LoadedCase(pred, gt, tuple(spacing) if spacing else geometry.spacing, roi,
                      geometry.affine, spacing_unit(geometry, given=bool(spacing)))


def load_cases(pairs: list[tuple[str, Path, Path]], rois: dict[str, Path] | None,
               roi_dir: str | Path | None, spacing: Sequence[float] | None,
               failed: list[tuple[str, str]], ignore: int | None = None
               ) -> dict[str, LoadedCase]:
    """Every readable case of ``pairs`` ``(key, prediction, ground truth)``; the others are
    appended to ``failed`` as ``(key, reason)``."""
    loaded = {}
    for key, pred_path, gt_path in pairs:
        try:
            if rois is not None and key not in rois:
                raise FileNotFoundError(f"no region of interest for {key} in {roi_dir}")
            roi_path = rois[key] if rois is not None else None
            loaded[key] = read_case(pred_path, gt_path, roi_path, spacing, ignore)
        except Exception as exc:  # report and go on with the other cases
            failed.append((key, f"{type(exc).__name__}: {exc}"))
            log.warning("%s: not evaluated (%s)", key, exc)
    return loaded


def as_labels(mask: np.ndarray) -> np.ndarray:
    """A binary mask stored as 0/255 holding only 255 (all foreground) -> 1, as read_mask does
    for masks holding both values."""
    if mask.size and mask.max() == 255 and np.isin(mask, (0, 255)).all():
        return (mask == 255).astype(np.uint8)
    return mask
