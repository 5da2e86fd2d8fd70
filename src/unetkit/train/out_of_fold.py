"""Out-of-fold scores: each fold's ``best.pt`` predicts the cases it never saw, as
``unetkit predict`` does, and the pooled scores choose the post-processing (nnU-Net's rule).

Every held-out case is read as ``unetkit predict`` reads it (``load_case``), predicted by the
fold's ``best.pt`` through the predictor's own chain (``Predictor.decide_image``: preprocessing,
windows, TTA, back onto the case's own grid, the calibrated threshold) and post-processed as the
checkpoint says, once with ``keep_largest`` off and once on when the cross-validation decides it.
Each variant is scored with Dice per foreground label against the case's mask on its original
grid (inside its region of interest, both set to background outside as ``unetkit evaluate
--roi`` does), so a case's Dice is what ``unetkit predict`` + ``unetkit evaluate`` give. Pixels
of the ignore label (sparse annotations, ``data.ignore_label``) are scored nowhere, and a region
model (``data.regions``) is scored per region ``1..R``, as ``unetkit evaluate`` scores both.

``pooled_summary`` averages over all out-of-fold cases and over each fold's; with ``decide`` the
largest component is kept only when it raises the pooled mean Dice
(``unetkit.train.postprocessing.keep_largest_choice``), and the per-case Dice reported are then
those of the chosen variant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import Config
from unetkit.config.regions import Region, region_names
from unetkit.data.dataset import Case, load_case
from unetkit.data.ignore import class_labels, unscaled
from unetkit.data.roi import load_roi
from unetkit.infer.postprocess import postprocess
from unetkit.infer.predictor import Predictor
from unetkit.metrics import case_metrics
from unetkit.metrics.regions import region_case_metrics
from unetkit.train.postprocessing import keep_largest_choice
from unetkit.train.splits import make_split
from unetkit.train.validation import mean_dice

PLAIN, LARGEST = "dice_plain", "dice_largest"  # the two post-processing variants


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined Dice is written as null."""
    return None if value is None or math.isnan(value) else float(value)


def held_out(config: Config, case_ids: list[str], fold: int, folds: int) -> list[str]:
    """The cases fold ``fold`` validates (the split ``prepare_data`` makes for it)."""
    d = config.data
    return make_split(case_ids, val_fraction=d.val_fraction, seed=config.train.seed,
                      split_file=d.split_file, fold=fold, folds=folds)[1]


def data_labels(config: Config, data_dir: Path, cases: dict[str, Any]
                ) -> tuple[dict[int, str], int | None, list[Region] | None]:
    """``({label value: name}, ignore label, regions)`` as every fold's ``prepare_data`` finds
    them (``data.*`` or dataset.json; the masks of all cases; the ignore label is no class)."""
    from unetkit.data.io import read_mask
    from unetkit.train.data import declared_labels, label_names

    declared = declared_labels(config, data_dir)
    ignore = declared.ignore
    masks = [] if declared.classes else [unscaled(read_mask(c.mask_path)[0], c.mask_path, ignore)
                                         for c in cases.values()]
    labels = class_labels(label_names(declared.classes, masks), ignore)
    assert labels is not None
    return labels, ignore, declared.regions.regions if declared.regions else None


def scored_names(labels: dict[int, str], regions: list[Region] | None) -> dict[int, str]:
    """What the scores are keyed by: the foreground labels, or the regions ``1..R``."""
    return region_names(regions) if regions else {v: n for v, n in labels.items() if v != 0}


def case_scores(predictor: Predictor, case: Case, label_values: Sequence[int],
                decide: bool, ignore: int | None = None) -> dict[str, dict[str, float | None]]:
    """``{variant: {label or region number: Dice}}`` of one held-out case (variants:
    ``PLAIN``, and ``LARGEST`` when ``decide``)."""
    known = [*label_values, *([] if ignore is None else [ignore])]
    image, mask, geometry = load_case(case, labels=known)
    mask = unscaled(mask, case.mask_path, ignore)
    _, classes, _ = predictor.decide_image(image, probabilities=False, spacing=geometry.spacing,
                                           source=str(case.image_paths[0]))
    values = np.asarray(label_values, dtype=np.int64)
    scored = load_roi(case, mask.shape)  # the pixels scored: inside the ROI and labelled
    if ignore is not None and (mask == ignore).any():
        scored = (mask != ignore) if scored is None else scored & (mask != ignore)
    regions = predictor.config.data.regions
    posts = {PLAIN: predictor.infer.postprocess}
    if decide:
        posts[LARGEST] = posts[PLAIN].model_copy(update={"keep_largest": True})
    scores = {}
    for variant, post in posts.items():
        predicted = values[postprocess(classes, post)]
        truth = mask
        if scored is not None:  # outside: background in both, as evaluate --roi
            predicted, truth = (np.where(scored, predicted, values[0]),
                                np.where(scored, mask, values[0]))
        if regions:
            keys = list(range(1, len(regions) + 1))
            dice = region_case_metrics(predicted, truth, [r.labels for r in regions],
                                       metrics=("dice",), scored=scored)
        else:
            keys = [int(v) for v in values[1:]]
            dice = case_metrics(predicted, truth, keys, metrics=("dice",))
        scores[variant] = {str(k): finite_or_none(dice[k]["dice"]) for k in keys}
    return scores


def score_fold(checkpoint: Path, cases: Sequence[Case], label_values: Sequence[int], *,
               decide: bool, device: str = "auto", ignore: int | None = None
               ) -> dict[str, Any]:
    """Predict and score a fold's held-out ``cases`` with its ``checkpoint``.

    Args:
        checkpoint: the fold's ``best.pt``.
        cases: the cases the fold never trained on.
        label_values: every label value of the data set, sorted (class ``i`` is the ``i``-th).
        decide: also score the maps with only their largest component per class.
        device: where the predictor runs.
        ignore: the mask value of unlabelled pixels, scored nowhere (or None).

    Returns:
        ``{"cases": {case_id: {variant: {label: Dice}}}, "seconds": float}``.
    """
    started = time.monotonic()
    settings = {"infer.postprocess.keep_largest": False} if decide else None
    predictor = Predictor.from_checkpoint(checkpoint, settings=settings, device=device)
    scores = {case.case_id: case_scores(predictor, case, label_values, decide, ignore)
              for case in cases}
    return {"cases": scores, "seconds": time.monotonic() - started}


def summary_of(per_case: dict[str, dict[str, float | None]], labels: Sequence[str]
               ) -> dict[str, Any]:
    """``{"mean_dice": mean over labels, "per_class": {label: mean over cases}}`` (NaN-aware,
    as ``unetkit.train.validation.mean_dice``; null where undefined)."""
    rows = [{label: {"dice": math.nan if v is None else v} for label, v in dice.items()}
            for dice in per_case.values()]
    means = mean_dice(rows, list(labels))
    return {"mean_dice": finite_or_none(means["val_dice"]),
            "per_class": {label: finite_or_none(means[f"dice_{label}"]) for label in labels}}


def pooled_summary(folds: Sequence[dict[str, Any]], labels: Sequence[str], decide: bool,
                   fixed: bool | str) -> dict[str, Any]:
    """The cross-validation's scores from every fold's ``score_fold`` result.

    Args:
        folds: per fold, ``score_fold``'s result.
        labels: the foreground labels scored (as strings).
        decide: the largest component is chosen here (``keep_largest: auto``).
        fixed: otherwise the configured ``keep_largest``, reported as it is.

    Returns:
        ``mean_dice`` / ``per_class`` pooled over all cases, ``per_fold`` and ``per_case`` (the
        chosen variant's Dice, both variants' when decided) and ``postprocessing``.
    """
    every = {case: row for fold in folds for case, row in fold["cases"].items()}
    if decide:
        plain = summary_of({c: row[PLAIN] for c, row in every.items()}, labels)["mean_dice"]
        largest = summary_of({c: row[LARGEST] for c, row in every.items()}, labels)["mean_dice"]
        choice = keep_largest_choice({"val_dice": math.nan if plain is None else plain,
                                      "val_dice_largest": math.nan if largest is None
                                      else largest}, on="pooled out-of-fold")
        choice = {k: (finite_or_none(v) if isinstance(v, float) else v)
                  for k, v in choice.items()}
    else:
        choice = {"keep_largest": fixed, "reason": "set by infer.postprocess.keep_largest"}
    variant = LARGEST if decide and choice["keep_largest"] else PLAIN
    per_case = {case: {"fold": k, "dice": row[variant], **({PLAIN: row[PLAIN],
                                                            LARGEST: row[LARGEST]}
                                                           if decide else {})}
                for k, fold in enumerate(folds) for case, row in fold["cases"].items()}
    per_fold = [{"fold": k, "cases": sorted(fold["cases"]), "predict_seconds": fold["seconds"],
                 **summary_of({c: row[variant] for c, row in fold["cases"].items()}, labels)}
                for k, fold in enumerate(folds)]
    pooled = summary_of({c: row["dice"] for c, row in per_case.items()}, labels)
    return {**pooled, "per_fold": per_fold, "per_case": dict(sorted(per_case.items())),
            "postprocessing": choice}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A cross-validation summary in a few lines of text (per fold, pooled, the choice)."""
    def dice(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"fold {fold['fold']}: mean Dice {dice(fold['mean_dice'])} on "
             f"{len(fold['cases'])} held-out case(s)" for fold in summary["per_fold"]]
    per_class = ", ".join(f"{summary['labels'][k]} {dice(v)}"
                          for k, v in summary["per_class"].items())
    return [*lines, f"cross-validation Dice {dice(summary['mean_dice'])} (pooled over "
            f"{len(summary['per_case'])} out-of-fold cases; {per_class})",
            f"largest component per class: {summary['postprocessing']['reason']}"]


__all__ = ["case_scores", "data_labels", "held_out", "pooled_summary", "score_fold",
           "summary_lines", "summary_of"]
