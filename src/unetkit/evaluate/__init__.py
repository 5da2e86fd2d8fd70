"""Prediction folder vs ground-truth folder -> per-case table, summary and an HTML report.

Modules: ``matching`` (which files belong to a case), ``folders`` (``evaluate_folders``: the
metrics of every case, inside regions of interest), ``probability`` (threshold-free scores from
saved probability maps, per case and pooled), ``tables`` (``per_case.csv``, ``summary.json``).
Outputs, self-contained in one folder: ``per_case.csv``, ``summary.json``, ``report.html``.
"""

from unetkit.evaluate.folders import (
    EvaluationResult,
    case_score,
    evaluate_folders,
    ranked_cases,
)
from unetkit.evaluate.matching import case_files, case_key, match_cases
from unetkit.evaluate.probability import PROBABILITY_COLUMNS, PROBABILITY_METRICS
from unetkit.evaluate.tables import (
    EVAL_METRICS,
    metric_columns,
    table_rows,
    write_csv,
    write_summary,
)

__all__ = [
    "EVAL_METRICS",
    "PROBABILITY_COLUMNS",
    "PROBABILITY_METRICS",
    "EvaluationResult",
    "case_files",
    "case_key",
    "case_score",
    "evaluate_folders",
    "match_cases",
    "metric_columns",
    "ranked_cases",
    "table_rows",
    "write_csv",
    "write_summary",
]
