"""Threshold-free scores of a two-class probability map: ROC and precision-recall curves, their
areas, and the confusion-matrix scores of a decision, per case or pooled over cases.

The published vessel-segmentation protocol (DRIVE and its U-Net papers) scores only pixels
inside a region of interest (the field of view) and pools the pixels of all test images into one
confusion matrix and one ROC curve; every function here takes an optional ``valid`` mask and
works on flat arrays, so pooling is concatenation.

* ROC AUC is the Mann-Whitney statistic: the probability that a random foreground pixel scores
  above a random background pixel, ties counted half (exact, from the ranks).
* PR AUC is the average precision ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores taken
  as thresholds, highest first (scikit-learn's definition; no interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

COUNTS = ("tp", "fp", "fn", "tn")


def flat_pixels(probability: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, truth)`` as flat float64 / bool arrays, restricted to ``valid`` pixels."""
    probability, truth = np.asarray(probability, np.float64), np.asarray(truth) > 0
    if probability.shape != truth.shape:
        raise ValueError(f"probability map {probability.shape} and mask {truth.shape} differ "
                         "in shape")
    if valid is None:
        return probability.ravel(), truth.ravel()
    valid = np.asarray(valid, bool)
    if valid.shape != truth.shape:
        raise ValueError(f"region of interest {valid.shape} and mask {truth.shape} differ")
    return probability[valid], truth[valid]


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (NaN when one class is absent)."""
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks: ties count half
    return float((ranks[truth].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def _descending(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """True/false positives at each distinct score taken as a threshold, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]  # end of each tie group
    tp = np.cumsum(truth)[last].astype(np.float64)
    fp = (last + 1) - tp
    return tp, fp, scores[last]


def roc_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false positive rate, true positive rate)`` from (0, 0) to (1, 1)."""
    tp, fp, _ = _descending(scores, truth)
    positives, negatives = max(tp[-1], 1.0), max(fp[-1], 1.0)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def pr_curve(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)``, recall increasing (from the highest threshold)."""
    tp, fp, _ = _descending(scores, truth)
    precision = tp / np.maximum(tp + fp, 1.0)
    return tp / max(tp[-1], 1.0), precision


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (NaN without foreground)."""
    if not truth.any():
        return float("nan")
    recall, precision = pr_curve(scores, truth)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def decision_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, precision and F1 of flat bool arrays."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    tp = float(np.count_nonzero(prediction & truth))
    fp = float(np.count_nonzero(prediction & ~truth))
    fn = float(np.count_nonzero(~prediction & truth))
    tn = float(truth.size) - tp - fp - fn

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {"accuracy": ratio(tp + tn, truth.size), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def pixel_scores(scores: np.ndarray, truth: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC and ``decision_scores`` of flat arrays (scores, bool truth, bool
    decision)."""
    return {"roc_auc": roc_auc(scores, truth), "pr_auc": average_precision(scores, truth),
            **decision_scores(decided, truth)}


def _case_pixels(probabilities: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                 truths: Sequence[np.ndarray], valids: Sequence[np.ndarray | None] | None
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(scores, truth, decided)`` flat arrays of each case, inside its valid pixels."""
    valids = list(valids) if valids is not None else [None] * len(truths)
    if not len(probabilities) == len(predictions) == len(truths) == len(valids):
        raise ValueError("need as many predictions, masks and regions as probability maps")
    out = []
    for probability, prediction, mask, valid in zip(probabilities, predictions, truths, valids,
                                                    strict=True):
        s, t = flat_pixels(probability, mask, valid)
        d, _ = flat_pixels(np.asarray(prediction) > 0, mask, valid)
        out.append((s, t, d > 0))
    return out


def binary_scores(probabilities: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                  truths: Sequence[np.ndarray], valids: Sequence[np.ndarray | None] | None = None
                  ) -> dict[str, float]:
    """ROC AUC, PR AUC and the decision's scores over the given cases pooled into one set of
    pixels (pass one case for per-case scores).

    Args:
        probabilities: foreground probability maps.
        predictions: the decided foreground (bool or labels > 0), same shapes.
        truths: ground-truth masks (foreground = label > 0).
        valids: regions of interest (None: every pixel counts).
    """
    pixels = _case_pixels(probabilities, predictions, truths, valids)
    return pixel_scores(*(np.concatenate(column) for column in zip(*pixels, strict=True)))


@dataclass
class ProbabilityScores:
    """``pixel_scores`` of each case and of all cases pooled, with curves for drawing."""

    per_case: list[dict[str, float]]
    pooled: dict[str, float]
    case_curves: list[dict[str, np.ndarray]] = field(default_factory=list)
    pooled_curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        """Each score's mean over the cases where it is defined (NaN where it never is); the
        pixel counts are left out."""
        out = {}
        for key in (k for k in self.pooled if k not in COUNTS):
            values = [case[key] for case in self.per_case if not math.isnan(case[key])]
            out[key] = float(np.mean(values)) if values else math.nan
        return out


def per_case_and_pooled(probabilities: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                        truths: Sequence[np.ndarray],
                        valids: Sequence[np.ndarray | None] | None = None,
                        curve_points: int = 0) -> ProbabilityScores:
    """The scores of each case and of all cases pooled, from one pass over the pixels.

    Args: as ``binary_scores``; ``curve_points``: also the ROC and PR curves of each case and
        of the pooled pixels, thinned to about this many points (``thin_curves``); 0: none.
    """
    pixels = _case_pixels(probabilities, predictions, truths, valids)
    pooled = [np.concatenate(column) for column in zip(*pixels, strict=True)]
    result = ProbabilityScores([pixel_scores(*p) for p in pixels], pixel_scores(*pooled))
    if curve_points:
        result.case_curves = [thin_curves(s, t, curve_points) for s, t, _ in pixels]
        result.pooled_curves = thin_curves(pooled[0], pooled[1], curve_points)
    return result


def thin_curves(scores: np.ndarray, truth: np.ndarray, points: int = 400
                ) -> dict[str, np.ndarray]:
    """ROC (``fpr``, ``tpr``) and PR (``recall``, ``precision``) curves at about ``points``
    evenly spaced thresholds (first and last kept), for drawing; empty without both classes."""
    if not truth.any() or truth.all():
        return {key: np.zeros(0) for key in ("fpr", "tpr", "recall", "precision")}
    fpr, tpr = roc_curve(scores, truth)
    recall, precision = pr_curve(scores, truth)

    def keep(n: int) -> np.ndarray:
        return np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))

    roc, pr = keep(len(fpr)), keep(len(recall))
    return {"fpr": fpr[roc], "tpr": tpr[roc], "recall": recall[pr], "precision": precision[pr]}
