"""Segmentation metrics on hard label maps (numpy): overlap, surface distances, aggregation.

Empty-case conventions, applied everywhere (details in ``docs/metrics.md``):

* label absent from both prediction and ground truth: Dice, IoU and every surface metric are
  ``NaN`` (undefined) and are left out of means in ``aggregate``;
* absent from exactly one: Dice = IoU = surface Dice = 0; HD, HD95 and ASSD = the image
  diagonal in physical units (a finite worst case).
"""

from unetkit.metrics.aggregate import (
    DEFAULT_METRICS,
    KNOWN_METRICS,
    aggregate,
    case_metrics,
    foreground_mean,
)
from unetkit.metrics.confusion import (
    confusion_counts,
    dice,
    dice_from_counts,
    iou,
    iou_from_counts,
    precision,
    precision_from_counts,
    recall,
    recall_from_counts,
    relative_volume_difference_from_counts,
    specificity,
    specificity_from_counts,
    volume_difference,
)
from unetkit.metrics.surface import (
    SurfaceDistances,
    assd,
    boundary,
    hausdorff,
    hd95,
    surface_dice,
    surface_distances,
)

__all__ = [
    "DEFAULT_METRICS",
    "KNOWN_METRICS",
    "SurfaceDistances",
    "aggregate",
    "assd",
    "boundary",
    "case_metrics",
    "confusion_counts",
    "dice",
    "dice_from_counts",
    "foreground_mean",
    "hausdorff",
    "hd95",
    "iou",
    "iou_from_counts",
    "precision",
    "precision_from_counts",
    "recall",
    "recall_from_counts",
    "relative_volume_difference_from_counts",
    "specificity",
    "specificity_from_counts",
    "surface_dice",
    "surface_distances",
    "volume_difference",
]
