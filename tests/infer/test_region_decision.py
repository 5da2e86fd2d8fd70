"""Deciding region models: each region's sigmoid > 0.5, painted in regions_class_order (later
regions overwrite earlier ones); per-region probabilities; label models exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import build_checkpoint

from unetkit.config import config_to_dict
from unetkit.infer.decision import decide_regions, paint_regions
from unetkit.infer.predictor import Prediction, Predictor
from unetkit.infer.roi import restrict_to_roi
from unetkit.runtime.checkpoint import load_checkpoint, save_checkpoint

BRATS = {"regions": [{"name": "whole", "labels": [1, 2, 3]},
                     {"name": "core", "labels": [2, 3]}, {"name": "enh", "labels": [3]}],
         "regions_class_order": [1, 2, 3]}


def region_checkpoint(path, spatial_dims: int = 2, image: np.ndarray | None = None):
    """A tiny region model: 3 sigmoid outputs, labels 0..3; with ``image``, each output's bias
    is moved so that its region covers about half of that image (a random network's outputs
    are nearly constant)."""
    build_checkpoint(path, out_channels=3, spatial_dims=spatial_dims, data=BRATS)
    checkpoint = load_checkpoint(path)
    checkpoint["labels"] = {0: "background", 1: "whole", 2: "core", 3: "enh"}
    save_checkpoint(checkpoint, path)
    if image is not None:
        predictor = Predictor.from_checkpoint(path)
        logits = predictor.predict_logits(predictor.preprocess(image)[0])
        checkpoint["model_state"]["head.main.bias"] -= logits.flatten(1).median(1).values
    return save_checkpoint(checkpoint, path)


def test_painting_equals_a_hand_computed_example_in_both_orders() -> None:
    on = torch.tensor([[1, 1, 1, 1, 0, 1],    # region 0 (outer)
                       [0, 1, 1, 0, 0, 1],    # region 1
                       [0, 0, 1, 0, 1, 0]],   # region 2 (inner; alone at pixel 4)
                      dtype=torch.bool)
    assert paint_regions(on, [1, 2, 3]).tolist() == [1, 2, 3, 1, 3, 2]
    # later regions overwrite earlier ones: with the outer region painted last it covers all
    assert paint_regions(on.flip(0), [3, 2, 1]).tolist() == [1, 1, 1, 1, 3, 1]
    assert paint_regions(on, [1, 3, 2]).tolist() == [1, 3, 2, 1, 2, 3]
    with pytest.raises(ValueError, match="3 region maps for a regions_class_order of 2"):
        paint_regions(on, [1, 2])


def test_a_region_is_on_where_its_probability_exceeds_one_half() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.1], [-3.0, 5.0, 1e-6, 0.0]])
    # p = 0.5 exactly (logit 0) is off, as nnU-Net's ``> 0.5``
    assert decide_regions(logits, [1, 2]).tolist() == [1, 2, 2, 1]
    assert torch.equal(decide_regions(logits, [1, 2]),
                       paint_regions(torch.sigmoid(logits) > 0.5, [1, 2]))


@pytest.mark.parametrize("spatial_dims,size", [(2, (19, 23)), (3, (9, 11, 7))])
def test_a_region_checkpoint_predicts_painted_labels_and_region_probabilities(
        tmp_path, spatial_dims, size) -> None:
    image = np.random.default_rng(0).normal(0, 1, (1, *size)).astype(np.float32)
    predictor = Predictor.from_checkpoint(region_checkpoint(tmp_path / "m.pt", spatial_dims,
                                                            image))
    assert predictor.region_order == [1, 2, 3]
    prediction = predictor.predict(image)
    x, _ = predictor.preprocess(image)
    logits = predictor.predict_logits(x)
    assert logits.shape == (3, *size)
    on = logits > 0
    expected = np.zeros(size, np.uint8)
    for region, label in enumerate([1, 2, 3]):  # painted by hand, in order
        expected[on[region].numpy()] = label
    assert np.array_equal(prediction.labels, expected)
    assert set(np.unique(expected).tolist()) == {0, 1, 2, 3}  # every label painted somewhere
    np.testing.assert_allclose(prediction.probabilities, torch.sigmoid(logits).numpy(),
                               atol=1e-6)
    assert prediction.regions == ["whole", "core", "enh"]
    # the memory-bounded path (labels decided window by window) paints the same
    assert np.array_equal(predictor.predict_labels(x), expected)


def test_thresholds_are_refused_for_region_models(tmp_path) -> None:
    path = region_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="a region model .* decides each region where its "
                                         "probability exceeds 0.5"):
        Predictor.from_checkpoint(path, settings={"infer.threshold": 0.3})


def test_region_probabilities_outside_a_region_of_interest_are_all_zero() -> None:
    probabilities = np.full((3, 2, 2), 0.9, np.float32)
    inside = np.array([[True, False], [True, True]])
    region = restrict_to_roi(Prediction(probabilities.copy(), np.ones((2, 2), np.uint8),
                                        regions=["a", "b", "c"]), inside)
    assert region.probabilities[:, 0, 1].tolist() == [0.0, 0.0, 0.0]
    labels = restrict_to_roi(Prediction(probabilities.copy(), np.ones((2, 2), np.uint8)),
                             inside)
    assert labels.probabilities[:, 0, 1].tolist() == [1.0, 0.0, 0.0]  # class 0 certain


def test_a_checkpoint_without_regions_predicts_exactly_as_before(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=3)
    checkpoint = load_checkpoint(path)
    # a checkpoint written before regions existed has no such keys in its config
    old = config_to_dict(checkpoint_config := Predictor.from_checkpoint(path).config)
    for key in ("regions", "regions_class_order"):
        old["data"].pop(key)
    checkpoint["config"] = old
    save_checkpoint(checkpoint, path)
    predictor = Predictor.from_checkpoint(path)
    assert predictor.region_order is None and checkpoint_config.data.regions is None
    image = np.random.default_rng(1).normal(0, 1, (1, 21, 17)).astype(np.float32)
    prediction = predictor.predict(image)
    logits = predictor.predict_logits(predictor.preprocess(image)[0])
    assert np.array_equal(prediction.labels, logits.argmax(0).numpy())
    np.testing.assert_allclose(prediction.probabilities, torch.softmax(logits, 0).numpy(),
                               atol=1e-6)
    assert prediction.regions is None


def test_a_one_region_model_is_never_calibrated_like_a_two_class_one(tmp_path) -> None:
    from unetkit.infer.calibration import foreground_probabilities

    path = build_checkpoint(tmp_path / "one.pt", out_channels=1,
                            data={"regions": [[1]], "regions_class_order": [1]})
    predictor = Predictor.from_checkpoint(path)
    assert predictor.region_order == [1] and len(predictor.labels) == 2
    with pytest.raises(ValueError, match="two-class model; this one has 2 labels and regions"):
        foreground_probabilities(predictor, [np.zeros((1, 8, 8), np.float32)])
