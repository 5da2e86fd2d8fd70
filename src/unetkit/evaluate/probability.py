"""Threshold-free scores of two-class predictions from the probability maps next to them.

``unetkit predict --save-probabilities`` writes ``PRED/probabilities/<case>.npz`` (or
``.nii.gz`` for NIfTI inputs), ``(K, *spatial)`` with channel 1 the foreground; these are found
automatically, or in the folder given. The maths is ``unetkit.metrics.probability``: ROC AUC, PR
AUC and the confusion-matrix scores of the written masks, per case and pooled over all cases (the
DRIVE protocol), inside each case's region of interest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data import io
from unetkit.evaluate.matching import case_files
from unetkit.metrics.probability import COUNTS, ProbabilityScores, per_case_and_pooled

PROBABILITY_METRICS = ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity",
                       "precision", "f1")
PROBABILITY_COLUMNS = (*PROBABILITY_METRICS, *COUNTS)
CURVE_POINTS = 400  # per curve in the report: smooth at any size, small in the page


def probability_folder(pred_dir: Path, given: str | Path | None) -> Path | None:
    """The folder of probability maps: ``given``, else ``pred_dir/probabilities`` when it
    exists; None when neither.

    Raises:
        FileNotFoundError: ``given`` is not a folder.
    """
    if given is not None:
        if not Path(given).is_dir():
            raise FileNotFoundError(f"--probabilities {given}: not a folder")
        return Path(given)
    default = Path(pred_dir) / "probabilities"
    return default if default.is_dir() else None


def probability_files(folder: Path) -> dict[str, Path]:
    """``{case key: file}`` of a folder of probability maps."""
    return case_files(folder, "probability maps")


def read_foreground(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The foreground probability ``(*spatial)`` float32 of a saved map: channel 1 of
    ``(2, *spatial)``, or the only channel of ``(1, *spatial)``.

    Raises:
        ValueError: not a two-class map on the ground truth's grid, or values outside [0, 1]
            (the message names the file).
    """
    array, _ = io.read_image(path)
    if array.shape[0] > 2:
        raise ValueError(f"{path}: {array.shape[0]} probability channels; threshold-free "
                         "metrics need a two-class map (channel 1 = foreground)")
    foreground = np.asarray(array[-1], dtype=np.float32)
    if foreground.shape != tuple(shape):
        raise ValueError(f"{path}: probability map shape {foreground.shape} differs from the "
                         f"ground truth's {tuple(shape)}")
    if not np.all(np.isfinite(foreground)) or foreground.min(initial=0) < 0 \
            or foreground.max(initial=0) > 1:
        raise ValueError(f"{path}: values outside [0, 1]; expected probabilities as "
                         "`unetkit predict --save-probabilities` writes them")
    return foreground


def score_probabilities(cases: list[str], maps: dict[str, np.ndarray],
                        loaded: dict[str, tuple]) -> ProbabilityScores:
    """Per-case and pooled scores of ``cases``.

    Args:
        cases: case keys, in order.
        maps: ``{case: foreground probability}``.
        loaded: ``{case: (prediction, truth, spacing, roi or None)}`` with prediction and truth
            already background outside the region of interest.
    """
    return per_case_and_pooled([maps[c] for c in cases], [loaded[c][0] for c in cases],
                               [loaded[c][1] for c in cases], [loaded[c][3] for c in cases],
                               curve_points=CURVE_POINTS)


def case_rows(scores: ProbabilityScores, cases: list[str]) -> dict[str, dict[str, float]]:
    """``{case: {column: value}}`` for the per-case table (pixel counts as integers)."""
    return {case: {k: (int(v) if k in COUNTS else v) for k, v in values.items()
                   if k in PROBABILITY_COLUMNS}
            for case, values in zip(cases, scores.per_case, strict=True)}


def probability_summary(scores: ProbabilityScores, cases: list[str], source: Path
                        ) -> dict[str, object]:
    """``summary.json``'s ``probability`` entry: pooled, mean over cases and per case."""
    pooled = {k: (int(v) if k in COUNTS else v) for k, v in scores.pooled.items()}
    return {"source": str(source), "cases": len(cases), "pooled": pooled,
            "mean_over_cases": scores.mean, "per_case": case_rows(scores, cases)}
