"""Per-case metric tables and their NaN-aware summary over cases, as nnU-Net summarises.

``case_metrics`` computes, for one case, ``{label: {metric: value}}``; ``aggregate`` turns
``{case_id: that}`` into per-class mean / std / median over cases plus the foreground mean.
``NaN`` marks an undefined value (e.g. Dice when a label is absent from both prediction and
ground truth) and is left out of every statistic; ``n`` counts the cases that contributed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from unetkit.metrics import confusion as C
from unetkit.metrics import surface as S

DEFAULT_METRICS = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "assd",
    "surface_dice",
    "volume_difference",
)
_COUNT_METRICS = ("tp", "fp", "fn", "tn", "n_pred", "n_ref")
_OVERLAP = {
    "dice": C.dice_from_counts,
    "iou": C.iou_from_counts,
    "precision": C.precision_from_counts,
    "recall": C.recall_from_counts,
    "specificity": C.specificity_from_counts,
    "relative_volume_difference": C.relative_volume_difference_from_counts,
}
_SURFACE = ("hd95", "hausdorff", "assd", "surface_dice")
KNOWN_METRICS = (*_OVERLAP, "volume_difference", *_SURFACE, *_COUNT_METRICS)


def _surface_values(
    distances: S.SurfaceDistances, wanted: Sequence[str], tau: float
) -> dict[str, float]:
    functions = {
        "hd95": lambda d: S.hausdorff_from_distances(d, 95.0),
        "hausdorff": lambda d: S.hausdorff_from_distances(d, 100.0),
        "assd": S.assd_from_distances,
        "surface_dice": lambda d: S.surface_dice_from_distances(d, tau),
    }
    return {name: functions[name](distances) for name in wanted}


def case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    labels: Iterable[int],
    spacing: Sequence[float] | float | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    tau: float = 1.0,
) -> dict[int, dict[str, float]]:
    """All requested metrics of one case, per label.

    Surface distances are computed once per label and only when a surface metric is requested,
    so ``metrics=("dice",)`` costs one pass of counting per label.

    Args:
        pred: predicted label map ``(*spatial)`` (2D or 3D).
        gt: ground-truth label map of the same shape.
        labels: label values to evaluate (include 0 only if background should be scored).
        spacing: voxel size per axis, used by surface metrics and ``volume_difference``.
        metrics: names from ``KNOWN_METRICS``.
        tau: surface Dice tolerance, in the units of ``spacing``.

    Returns:
        ``{label: {metric: value}}`` with float values (``NaN`` where undefined).
    """
    pred, gt = C.check_pair(pred, gt)
    unknown = [name for name in metrics if name not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(KNOWN_METRICS)}")
    labels = [int(label) for label in labels]
    volume = C.voxel_volume(spacing, pred.ndim)
    surface_wanted = [name for name in metrics if name in _SURFACE]
    result: dict[int, dict[str, float]] = {}
    for label, counts in C.confusion_counts(pred, gt, labels).items():
        values: dict[str, float] = {}
        for name in metrics:
            if name in _OVERLAP:
                values[name] = _OVERLAP[name](counts)
            elif name == "volume_difference":
                values[name] = float(counts["n_pred"] - counts["n_ref"]) * volume
            elif name in _COUNT_METRICS:
                values[name] = float(counts[name])
        if surface_wanted:
            distances = S.surface_distances(pred == label, gt == label, spacing)
            values.update(_surface_values(distances, surface_wanted, tau))
        result[label] = {name: values[name] for name in metrics}
    return result


def _nan_stats(values: list[float]) -> dict[str, float]:
    """mean / std (population) / median over the finite-or-inf values, ignoring NaN."""
    array = np.asarray(values, dtype=float)
    kept = array[~np.isnan(array)]
    if kept.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "median": nan, "n": 0, "n_nan": int(array.size)}
    return {
        "mean": float(kept.mean()),
        "std": float(kept.std()),
        "median": float(np.median(kept)),
        "n": int(kept.size),
        "n_nan": int(array.size - kept.size),
    }


def _nanmean(values: Iterable[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def foreground_mean(case_result: Mapping[Any, Mapping[str, float]]) -> dict[str, float]:
    """Mean over foreground labels (label != 0) of one case's metrics, ignoring NaN.

    Args:
        case_result: ``{label: {metric: value}}`` as returned by ``case_metrics``.

    Returns:
        ``{metric: value}``; ``NaN`` when no foreground label has a defined value.
    """
    foreground = [values for label, values in case_result.items() if int(label) != 0]
    names = list(dict.fromkeys(name for values in foreground for name in values))
    return {name: _nanmean(v[name] for v in foreground if name in v) for name in names}


def aggregate(per_case: Mapping[Hashable, Mapping[Any, Mapping[str, float]]]) -> dict[str, Any]:
    """Summarise ``{case_id: {label: {metric: value}}}`` over cases, NaN-aware.

    Args:
        per_case: per-case results of ``case_metrics`` (labels may be ints or their strings).

    Returns:
        A dict with
        ``num_cases``;
        ``per_class``: ``{label: {metric: {"mean", "std", "median", "n", "n_nan"}}}`` over cases
        (``NaN`` values excluded, ``std`` with ``ddof=0``);
        ``foreground_mean``: ``{metric: mean over foreground labels of the per-class means}``
        (nnU-Net's ``foreground_mean``; classes whose mean is NaN are skipped);
        ``per_case_foreground_mean``: ``{case_id: foreground_mean(case)}``.
    """
    collected: dict[int, dict[str, list[float]]] = {}
    for case in per_case.values():
        for label, values in case.items():
            slot = collected.setdefault(int(label), {})
            for name, value in values.items():
                slot.setdefault(name, []).append(float(value))
    per_class = {
        label: {name: _nan_stats(values) for name, values in metrics.items()}
        for label, metrics in sorted(collected.items())
    }
    fg_means = foreground_mean(
        {label: {n: s["mean"] for n, s in stats.items()} for label, stats in per_class.items()}
    )
    return {
        "num_cases": len(per_case),
        "per_class": per_class,
        "foreground_mean": fg_means,
        "per_case_foreground_mean": {
            case_id: foreground_mean(case) for case_id, case in per_case.items()
        },
    }
