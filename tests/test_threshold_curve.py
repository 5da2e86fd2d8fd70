"""F-beta at every threshold from one histogram pass, against brute force and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.metrics import dice
from unetkit.metrics.threshold import best_threshold, fbeta_curve, threshold_counts


def brute_fbeta(prob: np.ndarray, truth: np.ndarray, t: float, beta: float) -> float:
    pred = prob >= t
    tp = float((pred & truth).sum())
    fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denominator if denominator else np.nan


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_curve_equals_brute_force(beta):
    rng = np.random.default_rng(0)
    probs = [rng.random((23, 31)), rng.random((7, 9, 11)) ** 2]
    truths = [p + rng.normal(0, 0.3, p.shape) > 0.6 for p in probs]
    thresholds = np.array([0.1, 0.25, 0.5, 0.51, 0.9])
    curve = fbeta_curve(probs, truths, thresholds, beta)
    expected = [np.mean([brute_fbeta(p, g, t, beta) for p, g in zip(probs, truths, strict=True)])
                for t in thresholds]
    np.testing.assert_allclose(curve, expected, rtol=1e-12)
    if beta == 1.0:  # F1 is unetkit's Dice
        assert curve[2] == pytest.approx(np.mean(
            [dice((p >= 0.5).astype(int), g.astype(int), 1) for p, g in zip(probs, truths,
                                                                            strict=True)]))


def test_counts_by_hand_and_threshold_equality():
    prob = np.array([0.1, 0.3, 0.3, 0.7, 0.9])
    truth = np.array([0, 1, 0, 1, 1], bool)
    tp, fp, positives = threshold_counts(prob, truth, np.array([0.3, 0.5, 0.9, 0.95]))
    assert tp.tolist() == [3, 2, 1, 0]  # p >= 0.3 includes the pixels at exactly 0.3
    assert fp.tolist() == [1, 0, 0, 0]
    assert positives == 3


def test_best_threshold_picks_the_gap_and_lowest_of_ties():
    truth = np.zeros((10, 10), bool)
    truth[:, :3] = True
    prob = np.where(truth, 0.7, 0.2)
    prob[0, 5:] = 0.65  # five background pixels the model is unsure about
    threshold, score, curve = best_threshold([prob], [truth])
    assert threshold == pytest.approx(0.66)  # every t in (0.65, 0.70] is perfect; lowest wins
    assert score == pytest.approx(1.0)
    assert curve[0] < 1.0


def test_empty_images_are_left_out_and_errors():
    empty_prob, empty_truth = np.zeros((4, 4)), np.zeros((4, 4), bool)
    prob = np.full((4, 4), 0.8)
    truth = np.ones((4, 4), bool)
    curve = fbeta_curve([empty_prob, prob], [empty_truth, truth], np.array([0.5, 0.9]))
    assert curve[0] == 1.0  # the empty image is undefined, not a zero
    assert curve[1] == 0.0  # above 0.8 the full image is all missed
    with pytest.raises(ValueError, match="undefined"):
        best_threshold([empty_prob], [empty_truth])
    with pytest.raises(ValueError, match="beta"):
        fbeta_curve([prob], [truth], beta=0)
    with pytest.raises(ValueError, match="increasing"):
        fbeta_curve([prob], [truth], np.array([0.5, 0.4]))
    with pytest.raises(ValueError, match="shape"):
        fbeta_curve([prob], [truth[:2]])
    with pytest.raises(ValueError, match="as many masks"):
        fbeta_curve([prob], [])


def brute_fbeta_inside(prob, truth, valid, t, beta):
    return brute_fbeta(prob[valid], truth[valid], t, beta)


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_valid_masks_equal_brute_force_inside_them(beta):
    rng = np.random.default_rng(4)
    probs = [rng.random((19, 23)), rng.random((5, 8, 9))]
    truths = [p + rng.normal(0, 0.3, p.shape) > 0.6 for p in probs]
    valids = [rng.random(p.shape) < 0.7 for p in probs]
    thresholds = np.array([0.2, 0.5, 0.75])
    curve = fbeta_curve(probs, truths, thresholds, beta, valids)
    expected = [np.mean([brute_fbeta_inside(p, g, v, t, beta)
                         for p, g, v in zip(probs, truths, valids, strict=True)])
                for t in thresholds]
    np.testing.assert_allclose(curve, expected, rtol=1e-12)
    tp, fp, positives = threshold_counts(probs[0], truths[0], thresholds, valids[0])
    assert positives == np.count_nonzero(truths[0] & valids[0])
    assert tp.tolist() == [np.count_nonzero((probs[0] >= t) & truths[0] & valids[0])
                           for t in thresholds]
    assert fp.tolist() == [np.count_nonzero((probs[0] >= t) & ~truths[0] & valids[0])
                           for t in thresholds]
    # None for an image counts all of its pixels
    mixed = fbeta_curve(probs, truths, thresholds, beta, [None, valids[1]])
    assert mixed[1] == pytest.approx(np.mean([brute_fbeta(probs[0], truths[0], 0.5, beta),
                                              brute_fbeta_inside(probs[1], truths[1], valids[1],
                                                                 0.5, beta)]))


def test_pixels_outside_the_valid_mask_never_move_the_threshold():
    truth = np.zeros((10, 10), bool)
    truth[:, :3] = True
    prob = np.where(truth, 0.7, 0.2)
    valid = np.ones((10, 10), bool)
    valid[:, 8:] = False
    outside = prob.copy()
    outside[:, 8:] = 0.95  # confident false positives, but outside the region
    assert best_threshold([outside], [truth], valids=[valid])[:2] == \
        best_threshold([prob], [truth])[:2]
    assert best_threshold([outside], [truth])[1] < 1.0  # they would count without the mask
    with pytest.raises(ValueError, match="valid-pixel mask shape"):
        threshold_counts(prob, truth, np.array([0.5]), valid[:3])
    with pytest.raises(ValueError, match="as many valid-pixel masks"):
        fbeta_curve([prob], [truth], valids=[valid, valid])
