"""Metrics of overlapping regions (nnU-Net's region evaluation) on hard label maps.

A region is a set of label values; its map in a label map is where the label is one of them.
A region model is scored per region, the prediction's region against the ground truth's, with
every metric of ``case_metrics`` (Dice, IoU, surface distances, counts ...), as nnU-Net
evaluates region-based data sets on the regions rather than on the labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetkit.metrics.aggregate import DEFAULT_METRICS, case_metrics


def region_masks(labels: np.ndarray, regions: Sequence[Sequence[int]]) -> np.ndarray:
    """``(*spatial)`` label map -> ``(R, *spatial)`` bool region maps (region ``r`` where the
    label is one of ``regions[r]``)."""
    labels = np.asarray(labels)
    return np.stack([np.isin(labels, list(values)) for values in regions]).reshape(
        (len(regions), *labels.shape))


def region_case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    regions: Sequence[Sequence[int]],
    spacing: Sequence[float] | float | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    tau: float = 1.0,
    scored: np.ndarray | None = None,
) -> dict[int, dict[str, float]]:
    """Every requested metric of one case per region (empty-case conventions as
    ``case_metrics``: NaN where a region is in neither map).

    Args:
        pred: predicted label map ``(*spatial)``.
        gt: ground-truth label map of the same shape.
        regions: the label values of each region.
        spacing, metrics, tau: as ``case_metrics``.
        scored: ``(*spatial)`` bool, the pixels that count (labelled, inside the region of
            interest); elsewhere every region is off in both maps, neither a hit nor a miss.
            None: every pixel.

    Returns:
        ``{k: {metric: value}}`` with ``k = 1 .. R`` the region's number (region ``k - 1``),
        so that summaries treat regions like foreground labels.
    """
    predicted, truth = region_masks(pred, regions), region_masks(gt, regions)
    if scored is not None:
        predicted, truth = predicted & scored, truth & scored
    out: dict[int, dict[str, float]] = {}
    for index, (p, g) in enumerate(zip(predicted, truth, strict=True)):
        scored = case_metrics(p.view(np.uint8), g.view(np.uint8), [1], spacing, metrics, tau)
        out[index + 1] = scored[1]
    return out
