"""Prediction folder vs ground-truth folder -> per-case table, summary and an HTML report.

Modules: ``matching`` (which files belong to a case), ``labels`` (what is scored and its names:
``--labels``, ``dataset.json``), ``cases`` (one case read for scoring: background where nothing
is scored), ``folders`` (``evaluate_folders``: the metrics of every case, inside regions of
interest), ``regions`` (overlapping regions, scored per region), ``probability``
(threshold-free scores from saved probability maps, per case and pooled), ``units`` (mm,
voxels; numbers as people read them), ``tables`` (``per_case.csv``, ``summary.json``). Outputs,
self-contained in one folder: ``per_case.csv``, ``summary.json``, ``report.html``.
"""

from unetkit.evaluate.cases import LoadedCase
from unetkit.evaluate.folders import (
    EvaluationResult,
    best_and_worst,
    case_score,
    evaluate_folders,
    ranked_cases,
)
from unetkit.evaluate.labels import dataset_json_labels, scored_labels
from unetkit.evaluate.matching import case_files, case_key, find_case, match_cases
from unetkit.evaluate.probability import PROBABILITY_COLUMNS, PROBABILITY_METRICS
from unetkit.evaluate.tables import (
    EVAL_METRICS,
    metric_columns,
    table_rows,
    write_csv,
    write_summary,
)
from unetkit.evaluate.units import format_value, header, metric_units, spacing_unit

__all__ = [
    "EVAL_METRICS",
    "PROBABILITY_COLUMNS",
    "PROBABILITY_METRICS",
    "EvaluationResult",
    "LoadedCase",
    "best_and_worst",
    "case_files",
    "case_key",
    "case_score",
    "dataset_json_labels",
    "evaluate_folders",
    "find_case",
    "format_value",
    "header",
    "match_cases",
    "metric_columns",
    "metric_units",
    "ranked_cases",
    "scored_labels",
    "spacing_unit",
    "table_rows",
    "write_csv",
    "write_summary",
]
