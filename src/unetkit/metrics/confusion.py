"""Overlap metrics on hard label maps: confusion counts first, then scores from the counts.

All functions take numpy label maps ``pred`` and ``gt`` of equal shape ``(*spatial)`` (2D or 3D,
any integer or bool dtype) and a label value. Empty-case conventions (nnU-Net's):

* Dice, IoU: ``NaN`` when the label is absent from both prediction and ground truth
  (``tp + fp + fn == 0``); 0 when it is absent from exactly one of them.
* precision ``tp / (tp + fp)``: ``NaN`` when nothing is predicted;
  recall ``tp / (tp + fn)``: ``NaN`` when the ground truth is empty;
  specificity ``tn / (tn + fp)``: ``NaN`` when the label fills the whole ground truth.
* volume difference ``(|P| - |G|) * voxel volume``: always defined (0 when both empty);
  relative volume difference ``(|P| - |G|) / |G|``: ``NaN`` when the ground truth is empty.

``NaN`` means "undefined for this case" and is excluded from every mean in ``aggregate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Counts = dict[str, int]


def check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``pred, gt`` as numpy arrays after checking that their shapes match."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} differs from gt shape {gt.shape}")
    return pred, gt


def voxel_volume(spacing: Sequence[float] | float | None, ndim: int) -> float:
    """Volume (area in 2D) of one voxel in physical units; 1 when ``spacing`` is None."""
    return float(np.prod(normalize_spacing(spacing, ndim)))


def normalize_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    """Spacing as one positive float per axis (None -> 1.0, a scalar -> the same on every axis)."""
    if spacing is None:
        return (1.0,) * ndim
    values = np.atleast_1d(np.asarray(spacing, dtype=float))
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.shape != (ndim,) or not np.all(values > 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"spacing must be {ndim} positive numbers (one per axis), got {spacing!r}")
    return tuple(float(v) for v in values)


def confusion_counts(pred: np.ndarray, gt: np.ndarray, labels: Iterable[int]) -> dict[int, Counts]:
    """Per-label true/false positive/negative voxel counts.

    Args:
        pred: predicted label map ``(*spatial)``.
        gt: ground-truth label map ``(*spatial)``, same shape.
        labels: label values to count (each treated one-vs-rest).

    Returns:
        ``{label: {"tp", "fp", "fn", "tn", "n_pred", "n_ref"}}`` with int values.
    """
    pred, gt = check_pair(pred, gt)
    total = int(pred.size)
    result: dict[int, Counts] = {}
    for label in labels:
        in_pred = pred == label
        in_gt = gt == label
        n_pred = int(np.count_nonzero(in_pred))
        n_ref = int(np.count_nonzero(in_gt))
        tp = int(np.count_nonzero(np.logical_and(in_pred, in_gt, out=in_pred)))
        fp, fn = n_pred - tp, n_ref - tp
        result[int(label)] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": total - tp - fp - fn,
            "n_pred": n_pred,
            "n_ref": n_ref,
        }
    return result


def _ratio(numerator: float, denominator: float) -> float:
    return float("nan") if denominator == 0 else float(numerator) / float(denominator)


def dice_from_counts(counts: Counts) -> float:
    """``2 tp / (2 tp + fp + fn)``; NaN when both masks are empty."""
    return _ratio(2 * counts["tp"], 2 * counts["tp"] + counts["fp"] + counts["fn"])


def iou_from_counts(counts: Counts) -> float:
    """``tp / (tp + fp + fn)``; NaN when both masks are empty."""
    return _ratio(counts["tp"], counts["tp"] + counts["fp"] + counts["fn"])


def precision_from_counts(counts: Counts) -> float:
    """``tp / (tp + fp)``; NaN when the prediction is empty."""
    return _ratio(counts["tp"], counts["tp"] + counts["fp"])


def recall_from_counts(counts: Counts) -> float:
    """``tp / (tp + fn)`` (sensitivity); NaN when the ground truth is empty."""
    return _ratio(counts["tp"], counts["tp"] + counts["fn"])


def specificity_from_counts(counts: Counts) -> float:
    """``tn / (tn + fp)``; NaN when the ground truth has no negative voxel."""
    return _ratio(counts["tn"], counts["tn"] + counts["fp"])


def relative_volume_difference_from_counts(counts: Counts) -> float:
    """``(|P| - |G|) / |G|``; NaN when the ground truth is empty."""
    return _ratio(counts["fp"] - counts["fn"], counts["tp"] + counts["fn"])


def _counts(pred: np.ndarray, gt: np.ndarray, label: int) -> Counts:
    return confusion_counts(pred, gt, [label])[int(label)]


def dice(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Dice coefficient of ``label`` in two label maps ``(*spatial)``; see module conventions."""
    return dice_from_counts(_counts(pred, gt, label))


def iou(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Intersection over union (Jaccard) of ``label``; see module conventions."""
    return iou_from_counts(_counts(pred, gt, label))


def precision(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Precision (positive predictive value) of ``label``; see module conventions."""
    return precision_from_counts(_counts(pred, gt, label))


def recall(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Recall (sensitivity) of ``label``; see module conventions."""
    return recall_from_counts(_counts(pred, gt, label))


def specificity(pred: np.ndarray, gt: np.ndarray, label: int = 1) -> float:
    """Specificity of ``label``; see module conventions."""
    return specificity_from_counts(_counts(pred, gt, label))


def volume_difference(
    pred: np.ndarray,
    gt: np.ndarray,
    label: int = 1,
    spacing: Sequence[float] | float | None = None,
) -> float:
    """Signed volume difference ``(|P| - |G|) * voxel volume`` of ``label`` in physical units.

    Positive means over-segmentation. With ``spacing=None`` it is a voxel count difference.
    """
    counts = _counts(pred, gt, label)
    return float(counts["n_pred"] - counts["n_ref"]) * voxel_volume(spacing, np.ndim(pred))
