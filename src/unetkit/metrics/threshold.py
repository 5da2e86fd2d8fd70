"""Scores of a probability map at every decision threshold, from one pass over the pixels.

A binary model's decision ``p >= t`` trades false positives against false negatives; which
threshold is best depends on how the network happens to be calibrated, and that varies from one
short training run to the next by more than the runs differ in quality. ``fbeta_curve`` gives the
per-image F-beta (Dice when ``beta == 1``) at every threshold of a grid from a histogram of the
probabilities of foreground and background pixels, so a grid of 91 thresholds costs about one
threshold's work. ``best_threshold`` picks the maximum. Optional per-image ``valid`` masks (a
region of interest) restrict every count to the pixels inside them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def threshold_counts(probability: np.ndarray, truth: np.ndarray, thresholds: np.ndarray,
                     valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """True and false positives of ``probability >= t`` for each ``t`` of ``thresholds``.

    Args:
        probability: ``(*spatial)`` foreground probability.
        truth: ``(*spatial)`` bool (or 0/1) foreground.
        thresholds: ``(T,)`` increasing.
        valid: ``(*spatial)`` bool, the pixels that count (None: all).

    Returns:
        ``(tp, fp, positives)``: ``(T,)`` int64 counts and the number of true foreground pixels,
        inside ``valid``.
    """
    probability, truth = np.asarray(probability), np.asarray(truth).astype(bool)
    if probability.shape != truth.shape:
        raise ValueError(f"probability shape {probability.shape} differs from the mask's "
                         f"{truth.shape}")
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != truth.shape:
            raise ValueError(f"valid-pixel mask shape {valid.shape} differs from the mask's "
                             f"{truth.shape}")
        probability, truth = probability[valid], truth[valid]
    # bin k holds the pixels with thresholds[k-1] <= p < thresholds[k]; p >= t_k for bins > k.
    bins = np.searchsorted(thresholds, probability.ravel(), side="right")
    size = len(thresholds) + 1
    fg = np.bincount(bins[truth.ravel()], minlength=size)
    bg = np.bincount(bins[~truth.ravel()], minlength=size)
    above_fg = np.cumsum(fg[::-1])[::-1][1:]
    above_bg = np.cumsum(bg[::-1])[::-1][1:]
    return above_fg.astype(np.int64), above_bg.astype(np.int64), int(truth.sum())


def fbeta_curve(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                thresholds: np.ndarray = DEFAULT_THRESHOLDS, beta: float = 1.0,
                valids: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
    """Mean over images of F-beta of ``p >= t``, for each threshold ``t``; ``(T,)``.

    F-beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP); ``beta = 1`` is the Dice score,
    ``beta < 1`` weighs false positives more (thinner predictions). An image whose foreground is
    absent from both truth and prediction at a threshold is left out of that threshold's mean
    (NaN when no image counts), as in ``unetkit.metrics``. ``valids``: per image, the pixels
    that count (a region of interest; None: all).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or np.any(np.diff(thresholds) <= 0):
        raise ValueError("thresholds must be a 1-D increasing sequence")
    if len(probabilities) != len(truths) or not probabilities:
        raise ValueError("need as many masks as probability maps, at least one")
    valids = list(valids) if valids is not None else [None] * len(truths)
    if len(valids) != len(truths):
        raise ValueError("need as many valid-pixel masks as probability maps")
    b2 = beta * beta
    total = np.zeros(len(thresholds))
    counted = np.zeros(len(thresholds))
    for probability, truth, valid in zip(probabilities, truths, valids, strict=True):
        tp, fp, positives = threshold_counts(probability, truth, thresholds, valid)
        denominator = (1 + b2) * tp + b2 * (positives - tp) + fp
        defined = denominator > 0
        total[defined] += (1 + b2) * tp[defined] / denominator[defined]
        counted += defined
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counted > 0, total / np.maximum(counted, 1), np.nan)


def best_threshold(probabilities: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                   thresholds: np.ndarray = DEFAULT_THRESHOLDS, beta: float = 1.0,
                   valids: Sequence[np.ndarray | None] | None = None
                   ) -> tuple[float, float, np.ndarray]:
    """The threshold with the highest mean F-beta (the lowest of equal ones), its score, the curve
    (``valids`` as in ``fbeta_curve``).

    Raises:
        ValueError: no threshold has a defined score (every image empty in truth and prediction).
    """
    curve = fbeta_curve(probabilities, truths, thresholds, beta, valids)
    if np.all(np.isnan(curve)):
        raise ValueError("no foreground in any mask or prediction: the threshold is undefined")
    index = int(np.nanargmax(curve))
    return float(np.asarray(thresholds)[index]), float(curve[index]), curve
