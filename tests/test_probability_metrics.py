"""``unetkit.metrics.probability``: by hand, against MONAI and brute force, pooled vs per case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetkit.metrics.probability import (
    average_precision,
    binary_scores,
    decision_scores,
    flat_pixels,
    per_case_and_pooled,
    pr_curve,
    roc_auc,
    roc_curve,
    thin_curves,
)


def brute_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Every (foreground, background) pair: 1 when ordered right, 1/2 when tied."""
    pos, neg = scores[truth], scores[~truth]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def brute_average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """scikit-learn's AP: sum over distinct thresholds t (high to low) of (R_t - R_prev) P_t,
    each threshold's predictions recomputed from scratch."""
    total, previous_recall = 0.0, 0.0
    for t in np.unique(scores)[::-1]:
        decided = scores >= t
        tp = np.count_nonzero(decided & truth)
        precision, recall = tp / np.count_nonzero(decided), tp / np.count_nonzero(truth)
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return total


def test_hand_computed_auc_and_average_precision():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    truth = np.array([0, 0, 1, 1], bool)
    # pairs (fg, bg): 0.35 > 0.1 yes, 0.35 > 0.4 no, 0.8 > both yes -> 3 of 4
    assert roc_auc(scores, truth) == pytest.approx(0.75)
    # thresholds 0.8: P 1/1 R 1/2; 0.4: P 1/2 R 1/2; 0.35: P 2/3 R 1; 0.1: P 2/4 R 1
    # AP = 1/2 * 1 + 0 * 1/2 + 1/2 * 2/3 + 0 * 1/2 = 5/6
    assert average_precision(scores, truth) == pytest.approx(5 / 6)
    fpr, tpr = roc_curve(scores, truth)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    recall, precision = pr_curve(scores, truth)
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3, 0.5])


def test_ties_count_half_and_missing_class_is_nan():
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    # one tie group: precision 1/2 at recall 1
    assert average_precision(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert math.isnan(roc_auc(np.array([0.2, 0.3]), np.array([True, True])))
    assert math.isnan(average_precision(np.array([0.2, 0.3]), np.array([False, False])))


def test_decision_scores_by_hand():
    prediction = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    truth = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    s = decision_scores(prediction, truth)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (2, 2, 1, 3)
    assert s["accuracy"] == pytest.approx(5 / 8)
    assert s["sensitivity"] == pytest.approx(2 / 3)
    assert s["specificity"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_against_monai_and_brute_force(seed):
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    truth = rng.random(500) < 0.2
    scores = np.round(np.clip(truth * 0.3 + rng.normal(0.4, 0.2, 500), 0, 1), 2)  # many ties
    expected = float(monai_metrics.compute_roc_auc(torch.from_numpy(scores),
                                                   torch.from_numpy(truth.astype(np.int64))))
    assert roc_auc(scores, truth) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(scores, truth) == pytest.approx(brute_auc(scores, truth), abs=1e-12)
    assert average_precision(scores, truth) == pytest.approx(
        brute_average_precision(scores, truth), abs=1e-12)


def test_curves_are_monotone_and_their_area_is_the_auc():
    rng = np.random.default_rng(3)
    truth = rng.random(2000) < 0.3
    scores = truth * 0.25 + rng.random(2000)
    fpr, tpr = roc_curve(scores, truth)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(scores, truth), abs=1e-12)
    thin = thin_curves(scores, truth, points=50)
    assert 2 <= len(thin["fpr"]) <= 50 and thin["fpr"][0] == 0 and thin["tpr"][-1] == 1
    assert len(thin["recall"]) == len(thin["precision"]) <= 50
    assert thin_curves(scores, np.zeros(2000, bool))["fpr"].size == 0


def two_cases():
    """Two 4x4 images whose pooled AUC differs from the mean of the per-case AUCs."""
    rng = np.random.default_rng(5)
    truths = [np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    truths[0][:2, :2] = True
    truths[1][1:4, 1:3] = True
    probabilities = [truths[0] * 0.3 + rng.random((4, 4)) * 0.6,
                     truths[1] * 0.2 + rng.random((4, 4)) * 0.9 + 0.1]
    valids = [np.ones((4, 4), bool), np.ones((4, 4), bool)]
    valids[1][0] = False  # first row of case 1 outside its region of interest
    predictions = [p >= 0.5 for p in probabilities]
    return probabilities, predictions, truths, valids


def test_pooled_is_one_set_of_pixels_and_per_case_is_each_alone():
    probabilities, predictions, truths, valids = two_cases()
    result = per_case_and_pooled(probabilities, predictions, truths, valids, curve_points=20)
    pooled_scores = np.concatenate([p[v] for p, v in zip(probabilities, valids, strict=True)])
    pooled_truth = np.concatenate([t[v] for t, v in zip(truths, valids, strict=True)])
    pooled_decided = np.concatenate([d[v] for d, v in zip(predictions, valids, strict=True)])
    assert result.pooled["roc_auc"] == pytest.approx(brute_auc(pooled_scores, pooled_truth))
    assert result.pooled["pr_auc"] == pytest.approx(
        brute_average_precision(pooled_scores, pooled_truth))
    assert result.pooled["tp"] == np.count_nonzero(pooled_decided & pooled_truth)
    assert result.pooled["tn"] == np.count_nonzero(~pooled_decided & ~pooled_truth)
    assert result.pooled["tp"] + result.pooled["fp"] + result.pooled["fn"] + \
        result.pooled["tn"] == 16 + 12  # case 1 scores 12 pixels
    for index in range(2):
        alone = binary_scores([probabilities[index]], [predictions[index]], [truths[index]],
                              [valids[index]])
        assert result.per_case[index] == pytest.approx(alone)
        valid = valids[index]
        assert alone["roc_auc"] == pytest.approx(
            brute_auc(probabilities[index][valid], truths[index][valid]))
    assert result.pooled == pytest.approx(binary_scores(probabilities, predictions, truths,
                                                        valids))
    mean_auc = np.mean([case["roc_auc"] for case in result.per_case])
    assert result.mean["roc_auc"] == pytest.approx(mean_auc)
    assert result.pooled["roc_auc"] != pytest.approx(mean_auc)  # pooling is not averaging
    assert "tp" not in result.mean
    assert len(result.case_curves) == 2 and result.pooled_curves["fpr"][-1] == 1


def test_pixels_outside_the_region_do_not_count():
    probabilities, predictions, truths, valids = two_cases()
    before = binary_scores(probabilities, predictions, truths, valids)
    changed = [p.copy() for p in probabilities]
    changed[1][0] = 1.0  # outside: certain foreground, on background pixels
    changed_truth = [t.copy() for t in truths]
    changed_truth[1][0] = True
    assert binary_scores(changed, predictions, changed_truth, valids) == pytest.approx(before)
    assert binary_scores(changed, predictions, truths) != pytest.approx(
        binary_scores(probabilities, predictions, truths))


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="differ in shape"):
        flat_pixels(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="region of interest"):
        flat_pixels(np.zeros((2, 2)), np.zeros((2, 2)), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="as many"):
        binary_scores([np.zeros((2, 2))], [], [np.zeros((2, 2))])
