"""infer.threshold auto: calibration on the predict path, stored in checkpoints, used by predict."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.config import config_from_dict
from unetkit.infer.calibration import calibrate_threshold
from unetkit.infer.predictor import Predictor


def identity_predictor(labels=None, **infer) -> Predictor:
    """A Predictor whose network returns its input: the image holds the logits."""
    calibration = infer.pop("calibration", None)
    config = config_from_dict({"model": {"out_channels": 1}, "infer": infer})
    return Predictor(lambda x: x.float(), config=config,
                     labels=labels or {0: "background", 1: "membrane"}, calibration=calibration)


def logits_of(prob: np.ndarray) -> np.ndarray:
    return np.log(prob / (1 - prob)).astype(np.float32)[None]


def test_calibration_finds_the_threshold_that_separates_the_classes():
    truth = np.zeros((2, 16, 16), bool)
    truth[0, :, :5] = truth[1, 4:9] = True
    probs = np.where(truth, 0.72, 0.3)
    probs[0, 10, 8:] = 0.635  # confident-looking background: any threshold below pays for it
    images = [logits_of(p) for p in probs]
    result = calibrate_threshold(identity_predictor(), images, list(truth.astype(np.int64)))
    assert result.threshold == pytest.approx(0.64)  # the lowest perfect one
    assert result.score == pytest.approx(1.0) and result.images == 2
    assert result.curve["0.50"] < 1.0
    precise = calibrate_threshold(identity_predictor(), images, list(truth), beta=0.5)
    assert precise.threshold == pytest.approx(0.64) and precise.beta == 0.5


def test_calibration_refuses_more_than_two_classes():
    predictor = identity_predictor(labels={0: "a", 1: "b", 2: "c"})
    predictor.config = config_from_dict({"model": {"out_channels": 3}})
    with pytest.raises(ValueError, match="two-class"):
        calibrate_threshold(predictor, [np.zeros((3, 8, 8), np.float32)], [np.zeros((8, 8))])


def test_auto_threshold_uses_the_calibration_or_warns(caplog):
    prob = np.linspace(0.05, 0.95, 64).reshape(8, 8)
    calibrated = identity_predictor(threshold="auto", calibration={"threshold": 0.8})
    assert calibrated.infer.threshold == 0.8
    np.testing.assert_array_equal(calibrated.predict(logits_of(prob)).labels, prob >= 0.8)
    with caplog.at_level("WARNING", logger="unetkit.infer.predictor"):
        fallback = identity_predictor(threshold="auto")
    assert fallback.infer.threshold == 0.5 and "not calibrated" in caplog.text
    calibrated.update({"infer.threshold": 0.3})
    assert calibrated.infer.threshold == 0.3
    calibrated.update({"infer.threshold": "auto"})
    assert calibrated.infer.threshold == 0.8
