"""The evaluation's tables on disk: ``per_case.csv`` and ``summary.json``.

The CSV keeps plain metric names as column headers (machine-readable, full precision); the units
of its distance and volume columns are ``summary.json``'s ``units`` entry (``{"hd95": "mm",
"volume_difference": "mm³", ...}``, ``unetkit.evaluate.units``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit.evaluate.probability import PROBABILITY_COLUMNS, case_rows
from unetkit.runtime.atomic import atomic_path, write_text

if TYPE_CHECKING:
    from unetkit.evaluate.folders import EvaluationResult

EVAL_METRICS = ("dice", "iou", "hd95", "assd", "surface_dice", "volume_difference")
# What the statistics of summary.json's per_class entries are (``unetkit.metrics.aggregate``),
# stated in the file itself: a standard deviation could be either of two.
STATISTICS = {
    "mean": "mean over the cases with a value (NaN left out)",
    "std": "population standard deviation over those cases (divisor n, NumPy ddof=0), "
           "not the sample one (n - 1)",
    "median": "median over those cases",
    "n": "cases with a value", "n_nan": "cases where the metric is undefined (NaN)",
}


def metric_columns(result: EvaluationResult) -> tuple[str, ...]:
    """The metric columns of the per-case table: ``EVAL_METRICS``, then the threshold-free
    ones when probability maps were scored."""
    return EVAL_METRICS + (PROBABILITY_COLUMNS if result.probability is not None else ())


def table_rows(result: EvaluationResult) -> list[dict[str, Any]]:
    """One row per case and label: ``case, label, name`` and every metric (the threshold-free
    ones on the foreground row of a two-class task)."""
    extra = (case_rows(result.probability, result.probability_cases)
             if result.probability is not None else {})
    rows = []
    for case, per_label in result.per_case.items():
        for label, values in per_label.items():
            rows.append({"case": case, "label": label, "name": result.labels.get(label, ""),
                         **values, **extra.get(case, {})})
    return rows


def write_csv(result: EvaluationResult, path: Path) -> Path:
    """``per_case.csv``: one row per case and label (empty cell for NaN)."""
    rows = table_rows(result)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "label", "name",
                                                     *metric_columns(result)])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v)
                             for k, v in row.items()})
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(result: EvaluationResult, path: Path) -> Path:
    """``summary.json``: labels, aggregate statistics (defined in the file: ``STATISTICS``),
    per-case foreground means, ``units`` of the distance and volume metrics, the
    threshold-free scores (``probability``: pooled, mean over cases, per case), failures."""
    data = {"labels": result.labels, "metrics": list(metric_columns(result)),
            "statistics": STATISTICS, **result.summary,
            "failed": [{"case": c, "error": e} for c, e in result.failed]}
    return write_text(path, json.dumps(_json_safe(data), indent=2))
