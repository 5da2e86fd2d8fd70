"""Agreement with MONAI (an independent implementation) on random masks, and the pinned
differences where the empty-case conventions differ (see docs/metrics.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from unetkit.metrics import case_metrics, dice, hd95, iou, surface_dice
from unetkit.metrics import surface as S

monai_metrics = pytest.importorskip("monai.metrics")

CASES = [
    ((41, 37), (0.7, 1.9), 0),
    ((41, 37), (1.0, 1.0), 1),
    ((20, 17, 15), (2.5, 0.8, 1.1), 2),
    ((18, 22, 9), (0.6, 0.6, 3.0), 3),
]
TAU = 1.5


def _random_label_maps(shape, seed):
    """Two correlated smooth random label maps with labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), 1.5)
    noisy = field + 0.5 * gaussian_filter(rng.standard_normal(shape), 1.0)
    gt = np.digitize(field, np.quantile(field, [0.5, 0.8]))
    pred = np.digitize(noisy, np.quantile(noisy, [0.55, 0.82]))
    return pred, gt


def _monai(function, pred: np.ndarray, gt: np.ndarray, **options) -> float:
    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    g = torch.from_numpy(gt.astype(np.float32))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(function(p, g, **options))


@pytest.mark.parametrize(("shape", "spacing", "seed"), CASES)
def test_agrees_with_monai_on_random_masks(shape, spacing, seed):
    pred, gt = _random_label_maps(shape, seed)
    ours = case_metrics(pred, gt, [1, 2], spacing=spacing, tau=TAU,
                        metrics=("dice", "iou", "hd95", "hausdorff", "assd", "surface_dice"))
    m = monai_metrics
    for label in (1, 2):
        p, g = pred == label, gt == label
        ref = {
            "dice": _monai(m.compute_dice, p, g, include_background=True),
            "iou": _monai(m.compute_iou, p, g, include_background=True),
            "hd95": _monai(m.compute_hausdorff_distance, p, g, include_background=True,
                           percentile=95, spacing=spacing),
            "hausdorff": _monai(m.compute_hausdorff_distance, p, g, include_background=True,
                                spacing=spacing),
            "assd": _monai(m.compute_average_surface_distance, p, g, include_background=True,
                           symmetric=True, spacing=spacing),
            "surface_dice": _monai(m.compute_surface_dice, p, g, class_thresholds=[TAU],
                                   include_background=True, spacing=spacing),
        }
        assert ours[label] == pytest.approx(ref, rel=1e-5), label
        for method in ("edt", "kdtree"):  # both distance back-ends, whatever "auto" picked
            distances = S.surface_distances(p, g, spacing, method=method)
            assert S.hausdorff_from_distances(distances, 95.0) == pytest.approx(ref["hd95"],
                                                                               rel=1e-5)
            assert S.assd_from_distances(distances) == pytest.approx(ref["assd"], rel=1e-5)
        assert 0 < ours[label]["surface_dice"] < 1  # the masks overlap but are not equal


def test_pinned_differences_from_monai_empty_conventions():
    empty = np.zeros((8, 9), bool)
    blob = empty.copy()
    blob[2:5, 3:6] = True
    m = monai_metrics
    # both empty: ours NaN (excluded from means, as nnU-Net); MONAI NaN by default, 1 with
    # ignore_empty=False
    assert math.isnan(dice(empty, empty))
    assert math.isnan(_monai(m.compute_dice, empty, empty, include_background=True))
    assert _monai(m.compute_dice, empty, empty, include_background=True,
                  ignore_empty=False) == 1.0
    # ground truth empty, prediction not: ours 0 (a false positive is an error); MONAI's default
    # ignore_empty=True gives NaN, i.e. drops the case
    assert dice(blob, empty) == 0.0 and iou(blob, empty) == 0.0
    assert math.isnan(_monai(m.compute_dice, blob, empty, include_background=True))
    assert math.isnan(_monai(m.compute_iou, blob, empty, include_background=True))
    # prediction empty, ground truth not: both give Dice 0
    assert dice(empty, blob) == 0.0
    assert _monai(m.compute_dice, empty, blob, include_background=True) == 0.0
    # one mask empty: ours HD95 = image diagonal (finite worst case); MONAI NaN for HD95 and
    # inf for ASSD
    assert hd95(empty, blob, (2.0, 1.0)) == pytest.approx(math.hypot(16.0, 9.0))
    assert math.isnan(_monai(m.compute_hausdorff_distance, empty, blob, include_background=True,
                             percentile=95))
    assert math.isinf(_monai(m.compute_average_surface_distance, empty, blob,
                             include_background=True, symmetric=True))
    # surface Dice agrees: 0 with one empty, NaN with both empty
    assert surface_dice(empty, blob, 1.0) == 0.0
    assert _monai(m.compute_surface_dice, empty, blob, class_thresholds=[1.0],
                  include_background=True) == 0.0
    assert math.isnan(surface_dice(empty, empty, 1.0))
    assert math.isnan(_monai(m.compute_surface_dice, empty, empty, class_thresholds=[1.0],
                             include_background=True))
