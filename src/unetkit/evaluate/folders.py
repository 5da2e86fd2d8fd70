"""Prediction folder vs ground-truth folder -> per-case metrics, their summary and the report.

Every overlap and distance metric comes from ``unetkit.metrics.case_metrics``, the summary from
``unetkit.metrics.aggregate``. With regions of interest only the pixels inside each case's count:
prediction and ground truth are set to background outside it. For two-class tasks with probability
maps (``unetkit.evaluate.probability``) the threshold-free scores are added, per case and pooled.
Pixels the ground truth marks with the ignore label (sparse annotations: ``ignore_label``, or
the label named ``ignore`` in ``dataset.json``) count nowhere, as outside a region of interest
(``unetkit.evaluate.cases``). Overlapping regions are scored per region
(``unetkit.evaluate.regions``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config.regions import Region, region_names
from unetkit.evaluate import probability as prob
from unetkit.evaluate.cases import LoadedCase, load_cases
from unetkit.evaluate.images import OverlayImages, find_images, read_overlay_image
from unetkit.evaluate.labels import dataset_json_ignore, scored_labels
from unetkit.evaluate.matching import case_files, match_cases
from unetkit.evaluate.regions import case_scores, scored_regions
from unetkit.evaluate.tables import EVAL_METRICS, write_csv, write_summary
from unetkit.evaluate.units import common_unit, metric_units, quantity
from unetkit.metrics import aggregate, foreground_mean
from unetkit.metrics.probability import ProbabilityScores
from unetkit.runtime.outputs import (
    check_folder,
    check_outside,
    protected_folders,
    refuse_existing,
)

log = logging.getLogger(__name__)
OUTPUT_FILES = ("per_case.csv", "summary.json", "report.html")  # what out_dir receives


@dataclass
class EvaluationResult:
    """Per-case metrics ``{case: {label: {metric: value}}}``, their summary and written files;
    ``probability``: the threshold-free scores of ``probability_cases`` (two-class tasks with
    probability maps), else None; ``units``: ``{metric: unit}`` of the metrics that have one
    (``unetkit.evaluate.units``); ``images_note``: where the report's images come from."""

    per_case: dict[str, dict[int, dict[str, float]]]
    summary: dict[str, Any]
    labels: dict[int, str]
    files: dict[str, Path] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    probability: ProbabilityScores | None = None
    probability_cases: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    images_note: str = ""  # where the overlays' images come from (``unetkit.evaluate.images``)
    regions: list[Region] | None = None  # scored per region: ``labels`` are region 1..R


def _probability_maps(folder: Path, loaded: dict[str, LoadedCase], failed: list[tuple[str, str]]
                      ) -> dict[str, np.ndarray]:
    """Each case's foreground probability; a case without a readable map leaves ``loaded``
    for ``failed`` (every score then covers the same cases)."""
    files, maps = prob.probability_files(folder), {}
    for key in list(loaded):
        try:
            if key not in files:
                raise FileNotFoundError(f"no probability map for {key} in {folder}")
            maps[key] = prob.read_foreground(files[key], loaded[key].gt.shape)
        except Exception as exc:
            failed.append((key, f"{type(exc).__name__}: {exc}"))
            log.warning("%s: not evaluated (%s)", key, exc)
            del loaded[key]
    return maps


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    labels: dict[int, str] | None = None,
    spacing: Sequence[float] | None = None,
    tau: float = 1.0,
    images_dir: str | Path | None = None,
    report: Callable[..., Path] | None = None,
    roi_dir: str | Path | None = None,
    probabilities_dir: str | Path | None = None,
    ignore_label: int | None = None,
    force: bool = False,
    regions: list[Region] | None = None,
) -> EvaluationResult:
    """Score every prediction against its ground truth; write CSV, JSON (and HTML) outputs.

    ``out_dir`` is checked first (``unetkit.runtime.outputs``): a writable folder, not one the
    evaluation reads (nor inside one, ``pred_dir`` excepted: its ``evaluation/`` is the CLI's
    default), not a folder of the ground truth's data set, and no earlier table or report in it
    unless ``force``. The files are written atomically.

    Args:
        pred_dir: folder of predicted masks (and ``probabilities/`` when they were saved).
        gt_dir: folder of ground-truth masks (or a data folder with a ``masks`` sub-folder).
        out_dir: where to write ``per_case.csv``, ``summary.json`` and the report; None: no files.
        labels: ``{label: name}`` to score (an empty name is filled in); default: the
            foreground labels of a ``dataset.json`` in ``gt_dir`` or its parent and every
            non-zero label of the ground truth, named by ``dataset.json`` or ``classN``.
        spacing: voxel size per axis in mm (default: each ground-truth file's own spacing).
        tau: surface-Dice tolerance in the units of the spacing.
        images_dir: images to draw the overlays on (matched by name); default: the inputs
            ``unetkit predict`` recorded in ``pred_dir/predict.json``, else none (the overlays
            then show the masks on black).
        report: ``report(out_dir, result, overlays)`` writing ``report.html`` (e.g.
            ``unetkit.report.write_html_report``); None: no HTML.
        roi_dir: regions of interest (nonzero = inside) matched by name: only pixels inside
            count; a case without one fails. None: every pixel.
        probabilities_dir: probability maps for the threshold-free metrics (default:
            ``pred_dir/probabilities`` when present; used for two-class tasks).
        ignore_label: ground-truth value of unlabelled pixels, which count nowhere (default:
            the label named ``ignore`` in the ``dataset.json`` of ``gt_dir`` or its parent).
        force: replace the tables and report of an earlier evaluation in ``out_dir``.
        regions: overlapping regions to score instead of labels (``evaluate.regions``).

    Returns:
        The ``EvaluationResult``; cases that failed (unreadable, shape mismatch, no region of
        interest or probability map) are listed in ``failed`` and left out.

    Raises:
        FileNotFoundError: a folder is missing or no case matches.
        ValueError: no case could be evaluated, or ``probabilities_dir`` given for a task
            that is not two-class.
        OutputError: ``out_dir`` breaks the output rule (nothing written).
        WriteError: a file could not be written (disk full); no partial file is left.
    """
    folder = prob.probability_folder(Path(pred_dir), probabilities_dir)
    if out_dir is not None:
        reads = [p for p in (gt_dir, images_dir, roi_dir, folder) if p is not None]
        check_outputs(Path(out_dir), [Path(pred_dir), *map(Path, reads)],
                      OUTPUT_FILES if report is not None else OUTPUT_FILES[:2], force)
    pairs, missing = match_cases(Path(pred_dir), Path(gt_dir))
    rois = case_files(Path(roi_dir), "regions of interest") if roi_dir is not None else None
    failed = [(key, "no prediction") for key in missing]
    ignore = ignore_label if ignore_label is not None else dataset_json_ignore(gt_dir)
    loaded = load_cases(pairs, rois, roi_dir, spacing, failed, ignore)
    found = {int(v) for case in loaded.values() for v in np.unique(case.gt)}
    regions = scored_regions(gt_dir, pred_dir, labels, regions)
    labels = region_names(regions) if regions else {
        v: n for v, n in scored_labels(gt_dir, labels, found).items() if v != ignore}
    two_class = sorted(labels) == [1] and not regions
    if probabilities_dir is not None and not two_class:
        raise ValueError(f"--probabilities: threshold-free metrics need a two-class task; "
                         f"the labels scored are {sorted(labels)}")
    maps = _probability_maps(folder, loaded, failed) if folder and two_class else None
    if not loaded:
        raise ValueError(f"no case could be evaluated: {failed[:3]}")
    per_case = {key: case_scores(case, sorted(labels), regions, tau)
                for key, case in loaded.items()}
    result = EvaluationResult(per_case, aggregate(per_case), dict(labels), failed=failed,
                              regions=regions)
    if regions:
        result.summary["regions"] = [region.model_dump() for region in regions]
    result.summary["roi_dir"] = str(roi_dir) if roi_dir is not None else None
    result.summary["ignore_label"] = ignore
    unit = common_unit([case.unit for case in loaded.values()])
    dims = next(iter(loaded.values())).gt.ndim
    result.units = metric_units(EVAL_METRICS, unit, dims)
    result.summary["units"] = result.units
    result.summary["surface_dice_tolerance"] = quantity(tau, result.units["hd95"])
    if maps is not None and folder is not None:
        result.probability_cases = list(loaded)
        result.probability = prob.score_probabilities(result.probability_cases, maps, loaded)
        result.summary["probability"] = prob.probability_summary(
            result.probability, result.probability_cases, folder)
    images = find_images(pairs, Path(pred_dir), images_dir)
    result.images_note = images.source
    if images.decision:  # what decided the masks, as unetkit predict recorded it
        result.summary["prediction"] = images.decision
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.files["csv"] = write_csv(result, out / "per_case.csv")
        result.files["json"] = write_summary(result, out / "summary.json")
        if report is not None:
            overlays = _overlay_cases(result, loaded, images)
            result.files["html"] = report(out, result, overlays)
    return result


def check_outputs(out_dir: Path, reads: Sequence[Path], names: Sequence[str], force: bool
                  ) -> None:
    """The output rule for an evaluation: ``out_dir`` writable, outside the folders read
    (``reads[0]``, the predictions, may hold it) and their data sets, ``names`` not there
    unless ``force``."""
    check_folder(out_dir, "--out")
    check_outside(out_dir, "--out", protected_folders(reads), inside_ok=reads[:1])
    refuse_existing([out_dir / name for name in names], "--out", force)


def case_score(result: EvaluationResult, case: str) -> float:
    """Mean foreground Dice of one case (NaN if undefined)."""
    return foreground_mean(result.per_case[case]).get("dice", math.nan)


def ranked_cases(result: EvaluationResult) -> list[str]:
    """Cases from best to worst mean Dice (undefined last)."""
    scores = {case: case_score(result, case) for case in result.per_case}
    return sorted(scores, key=lambda c: (math.isnan(scores[c]), -np.nan_to_num(scores[c])))


def best_and_worst(result: EvaluationResult, count: int = 3) -> list[tuple[str, str]]:
    """``("best" | "worst", case)`` for the report's cards: up to ``count`` of each, never the
    same case twice (with few cases the better half is "best", the rest "worst"; worst first)."""
    ranked = ranked_cases(result)
    n_best = min(count, math.ceil(len(ranked) / 2))
    n_worst = min(count, len(ranked) - n_best)
    worst = ranked[len(ranked) - n_worst:][::-1] if n_worst else []
    return [("best", c) for c in ranked[:n_best]] + [("worst", c) for c in worst]


def _overlay_cases(result: EvaluationResult, loaded: dict[str, LoadedCase],
                   images: OverlayImages, count: int = 3) -> list[dict[str, Any]]:
    """Image, prediction, ground truth and affine of the best and worst ``count`` cases (a
    black image where none is known or readable: ``unetkit.evaluate.images``)."""
    out = []
    for kind, case in best_and_worst(result, count):
        loaded_case, path = loaded[case], images.files.get(case)
        if path is None and images.where:
            log.warning("%s: no image in %s for the overlay (drawn on black)", case,
                        images.where)
        image = read_overlay_image(case, path, loaded_case.gt.shape)
        out.append({"kind": kind, "case": case, "score": case_score(result, case),
                    "image": image, "pred": loaded_case.pred, "gt": loaded_case.gt,
                    "affine": loaded_case.affine})
    return out
