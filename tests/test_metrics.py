"""Metrics on hard label maps: hand-computed values on tiny arrays, empty cases, aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, gaussian_filter

from unetkit.metrics import (
    aggregate,
    assd,
    boundary,
    case_metrics,
    confusion_counts,
    dice,
    foreground_mean,
    hausdorff,
    hd95,
    iou,
    precision,
    recall,
    specificity,
    surface_dice,
    surface_distances,
    volume_difference,
)

NAN = float("nan")

# 3 x 4 label maps with labels 0, 1, 2 (label 3 absent from both)
PRED = np.array([[0, 1, 1, 0], [2, 2, 1, 0], [0, 0, 2, 2]])
GT = np.array([[0, 1, 0, 0], [2, 1, 1, 0], [0, 2, 2, 0]])


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def test_confusion_counts_by_hand():
    counts = confusion_counts(PRED, GT, [0, 1, 2, 3])
    # label 1: pred {(0,1),(0,2),(1,2)}, gt {(0,1),(1,1),(1,2)} -> tp 2, fp 1, fn 1, tn 8
    assert counts[1] == {"tp": 2, "fp": 1, "fn": 1, "tn": 8, "n_pred": 3, "n_ref": 3}
    # label 2: pred {(1,0),(1,1),(2,2),(2,3)}, gt {(1,0),(2,1),(2,2)} -> tp 2, fp 2, fn 1
    assert counts[2] == {"tp": 2, "fp": 2, "fn": 1, "tn": 7, "n_pred": 4, "n_ref": 3}
    assert counts[0] == {"tp": 4, "fp": 1, "fn": 2, "tn": 5, "n_pred": 5, "n_ref": 6}
    assert counts[3] == {"tp": 0, "fp": 0, "fn": 0, "tn": 12, "n_pred": 0, "n_ref": 0}


def test_overlap_scores_by_hand():
    assert dice(PRED, GT, 2) == pytest.approx(4 / 7)
    assert iou(PRED, GT, 2) == pytest.approx(2 / 5)
    assert precision(PRED, GT, 2) == pytest.approx(2 / 4)
    assert recall(PRED, GT, 2) == pytest.approx(2 / 3)
    assert specificity(PRED, GT, 2) == pytest.approx(7 / 9)
    assert volume_difference(PRED, GT, 2) == 1.0
    assert volume_difference(PRED, GT, 2, spacing=(0.5, 3.0)) == pytest.approx(1.5)
    assert dice(PRED > 0, GT > 0) == pytest.approx(2 * 5 / (7 + 6))


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        # both empty: every overlap score NaN except specificity
        (np.zeros((3, 3)), np.zeros((3, 3)), dict(dice=NAN, iou=NAN, precision=NAN, recall=NAN,
                                                  specificity=1.0, volume_difference=0.0)),
        # prediction empty, ground truth one voxel
        (np.zeros((3, 3)), np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]]),
         dict(dice=0.0, iou=0.0, precision=NAN, recall=0.0, specificity=1.0,
              volume_difference=-1.0)),
        # ground truth empty, prediction two voxels
        (np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]]), np.zeros((3, 3)),
         dict(dice=0.0, iou=0.0, precision=0.0, recall=NAN, specificity=7 / 9,
              volume_difference=2.0)),
        # ground truth fills the image: specificity undefined
        (np.ones((2, 2)), np.ones((2, 2)), dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0,
                                                specificity=NAN, volume_difference=0.0)),
    ],
)
def test_overlap_empty_conventions(pred, gt, expected):
    functions = dict(dice=dice, iou=iou, precision=precision, recall=recall,
                     specificity=specificity, volume_difference=volume_difference)
    for name, value in expected.items():
        assert _same(functions[name](pred, gt, 1), value), name
    table = case_metrics(pred, gt, [1], metrics=tuple(expected))
    for name, value in expected.items():
        assert _same(table[1][name], value), name


def test_boundary_matches_scipy_erosion():
    rng = np.random.default_rng(0)
    for shape in [(7, 9), (5, 6, 4), (1, 5)]:
        mask = rng.random(shape) < 0.6
        assert np.array_equal(boundary(mask), mask ^ binary_erosion(mask))
    full = np.ones((4, 5), bool)
    assert boundary(full).sum() == 4 + 4 + 3 + 3  # the image border


def test_surface_two_points_with_spacing():
    pred = np.zeros((4, 5), bool)
    gt = np.zeros((4, 5), bool)
    pred[1, 1], gt[1, 4] = True, True
    spacing = (2.0, 0.5)
    for function in (hd95, hausdorff, assd):
        assert function(pred, gt, spacing) == pytest.approx(1.5)
    assert surface_dice(pred, gt, 1.0, spacing) == 0.0
    assert surface_dice(pred, gt, 1.5, spacing) == 1.0
    gt[1, 4], gt[3, 1] = False, True  # now two rows apart: 2 * 2.0
    assert hausdorff(pred, gt, spacing) == pytest.approx(4.0)


def test_surface_shifted_square_by_hand():
    pred = np.zeros((5, 6), bool)
    pred[1:4, 1:4] = True
    gt = np.roll(pred, 1, axis=1)
    # each boundary has 8 voxels; four of each lie on the other boundary, four at distance 1
    distances = surface_distances(pred, gt)
    assert sorted(distances.pred_to_gt.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sorted(distances.gt_to_pred.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert hausdorff(pred, gt) == 1.0
    assert hd95(pred, gt) == 1.0
    assert assd(pred, gt) == pytest.approx(0.5)
    assert surface_dice(pred, gt, tau=0.5) == pytest.approx(0.5)
    assert surface_dice(pred, gt, tau=1.0) == 1.0


def test_hd95_is_max_of_directed_percentiles():
    pred = np.zeros((1, 6), bool)
    gt = np.zeros((1, 6), bool)
    pred[0, [0, 4]] = True
    gt[0, 0] = True
    # d(P->G) = [0, 4], d(G->P) = [0]: q95 = 0 + 0.95 * 4 = 3.8 (linear interpolation)
    assert hd95(pred, gt) == pytest.approx(3.8)
    assert hausdorff(pred, gt) == 4.0
    assert assd(pred, gt) == pytest.approx(4 / 3)
    assert surface_dice(pred, gt, tau=1.0) == pytest.approx(2 / 3)


def test_surface_empty_conventions():
    empty = np.zeros((3, 4, 5), bool)
    blob = empty.copy()
    blob[1, 1:3, 2] = True
    spacing = (2.0, 1.0, 0.5)
    diagonal = math.sqrt(6.0**2 + 4.0**2 + 2.5**2)
    for function in (hd95, hausdorff, assd):
        assert math.isnan(function(empty, empty, spacing))
        assert function(empty, blob, spacing) == pytest.approx(diagonal)
        assert function(blob, empty, spacing) == pytest.approx(diagonal)
    assert math.isnan(surface_dice(empty, empty, 1.0, spacing))
    assert surface_dice(empty, blob, 1.0, spacing) == 0.0
    assert surface_dice(blob, empty, 1.0, spacing) == 0.0


@pytest.mark.parametrize("shape", [(40, 37), (18, 21, 15)])
def test_edt_and_kdtree_agree_and_crop_is_exact(shape):
    rng = np.random.default_rng(1)
    field = gaussian_filter(rng.standard_normal(shape), 2)
    pred, gt = field > 0.05, np.roll(field, 2, axis=0) > 0.0
    spacing = (1.3, 0.7, 2.1)[: len(shape)]
    edt = surface_distances(pred, gt, spacing, method="edt")
    tree = surface_distances(pred, gt, spacing, method="kdtree")
    np.testing.assert_allclose(np.sort(edt.pred_to_gt), np.sort(tree.pred_to_gt), atol=1e-9)
    np.testing.assert_allclose(np.sort(edt.gt_to_pred), np.sort(tree.gt_to_pred), atol=1e-9)
    # embedding in a larger empty image changes nothing but the diagonal
    big_pred = np.pad(pred, 3)
    big_gt = np.pad(gt, 3)
    assert hd95(big_pred, big_gt, spacing) == pytest.approx(hd95(pred, gt, spacing))
    assert assd(big_pred, big_gt, spacing) == pytest.approx(assd(pred, gt, spacing))


def test_case_metrics_by_hand():
    table = case_metrics(PRED, GT, [1, 2, 3], spacing=(1.0, 2.0),
                         metrics=("dice", "iou", "hd95", "volume_difference", "tp"))
    assert table[2]["dice"] == pytest.approx(4 / 7)
    assert table[2]["volume_difference"] == pytest.approx(2.0)  # one voxel of area 2
    assert table[2]["tp"] == 2.0
    assert math.isnan(table[3]["dice"]) and math.isnan(table[3]["hd95"])
    assert table[1]["hd95"] == pytest.approx(hd95(PRED == 1, GT == 1, (1.0, 2.0)))
    assert list(table[1]) == ["dice", "iou", "hd95", "volume_difference", "tp"]
    assert case_metrics(PRED, GT, [1], metrics=("dice",)) == {1: {"dice": pytest.approx(2 / 3)}}


def test_case_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown metric"):
        case_metrics(PRED, GT, [1], metrics=("dsc",))
    with pytest.raises(ValueError, match="differs from gt shape"):
        case_metrics(PRED, GT[:2], [1])
    with pytest.raises(ValueError, match="spacing must be 2 positive"):
        case_metrics(PRED, GT, [1], spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="tau"):
        surface_dice(PRED == 1, GT == 1, tau=-1.0)


def test_aggregate_by_hand():
    per_case = {
        "a": {0: {"dice": 0.9}, 1: {"dice": 1.0, "hd95": 2.0}, 2: {"dice": 0.0, "hd95": 10.0}},
        "b": {0: {"dice": 0.7}, 1: {"dice": 0.5, "hd95": 4.0}, 2: {"dice": NAN, "hd95": NAN}},
        "c": {0: {"dice": 0.8}, 1: {"dice": NAN, "hd95": NAN}, 2: {"dice": NAN, "hd95": NAN}},
    }
    summary = aggregate(per_case)
    assert summary["num_cases"] == 3
    one = summary["per_class"][1]["dice"]
    assert one == {"mean": 0.75, "std": 0.25, "median": 0.75, "n": 2, "n_nan": 1}
    assert summary["per_class"][2]["dice"]["mean"] == 0.0
    assert summary["per_class"][2]["dice"]["n"] == 1
    # nnU-Net foreground mean: mean over labels != 0 of the per-class means
    assert summary["foreground_mean"]["dice"] == pytest.approx((0.75 + 0.0) / 2)
    assert summary["foreground_mean"]["hd95"] == pytest.approx((3.0 + 10.0) / 2)
    assert summary["per_case_foreground_mean"]["a"]["dice"] == pytest.approx(0.5)
    assert summary["per_case_foreground_mean"]["b"]["dice"] == pytest.approx(0.5)
    assert math.isnan(summary["per_case_foreground_mean"]["c"]["dice"])


def test_aggregate_all_nan_class_and_string_labels():
    per_case = {"x": {"1": {"dice": NAN}, "2": {"dice": 0.4}}, "y": {"1": {"dice": NAN}}}
    summary = aggregate(per_case)
    stats = summary["per_class"][1]["dice"]
    assert math.isnan(stats["mean"]) and stats["n"] == 0 and stats["n_nan"] == 2
    assert summary["foreground_mean"]["dice"] == pytest.approx(0.4)
    assert foreground_mean({0: {"dice": 1.0}, 1: {"dice": 0.2}}) == {"dice": pytest.approx(0.2)}


def test_aggregate_applies_empty_conventions_end_to_end():
    # case 1: label 1 perfect; case 2: label 1 absent from both (NaN); case 3: missed entirely
    gt = np.zeros((6, 6), np.uint8)
    gt[2:4, 2:4] = 1
    cases = {
        "hit": case_metrics(gt, gt, [1]),
        "absent": case_metrics(np.zeros_like(gt), np.zeros_like(gt), [1]),
        "missed": case_metrics(np.zeros_like(gt), gt, [1]),
    }
    summary = aggregate(cases)["per_class"][1]
    assert summary["dice"]["mean"] == pytest.approx(0.5) and summary["dice"]["n"] == 2
    assert summary["hd95"]["mean"] == pytest.approx(math.hypot(6, 6) / 2)
    assert summary["surface_dice"]["mean"] == pytest.approx(0.5)
    assert summary["precision"]["n"] == 1  # the missed case predicts nothing: NaN precision
