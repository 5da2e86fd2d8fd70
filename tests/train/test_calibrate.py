"""infer.threshold auto at the end of training: best.pt calibrated, stored, used by predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetkit.infer.predictor import Predictor
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train.fit import fit


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "source"), [
    (["train.loss.name=dice_bce", "infer.tta_axes=[1]"], "training"),
    # without validation cases a held-out band of every training mask calibrates
    (["train.loss.name=bce", "data.calibration_band=0.25"], "held-out band"),
])
def test_training_with_auto_threshold_calibrates_best_checkpoint(tmp_path, disks, tiny_config,
                                                                 overrides, source):
    data = disks(tmp_path / "data", n_cases=4)
    config = tiny_config("infer.threshold=auto", "data.val_fraction=0", *overrides)
    result = fit(config, data, tmp_path / "run")
    record = result.calibration
    assert record is not None and record["source"] == source and record["images"] == 4
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["calibration"] == record
    assert best["config"]["infer"]["threshold"] == record["threshold"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["calibration"] == record
    assert json.loads((tmp_path / "run" / "calibration.json").read_text()) == record
    assert record["score"] == pytest.approx(max(record["curve"].values()), abs=1e-5)
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    assert predictor.infer.threshold == record["threshold"]


def test_auto_threshold_refuses_multiclass_data_before_training(tmp_path, disks, tiny_config):
    data = disks(tmp_path / "data", n_cases=3)
    config = tiny_config("infer.threshold=auto", "data.labels={0: bg, 1: a, 2: b}")
    with pytest.raises(ValueError, match="infer.threshold: auto needs two labels"):
        fit(config, data, tmp_path / "run")


def test_held_out_bands_never_train(tmp_path, disks, tiny_config):
    from unetkit.data.roi import ROI_IGNORE
    from unetkit.train.data import prepare_data

    data = disks(tmp_path / "data", n_cases=3)
    plain = prepare_data(tiny_config("data.val_fraction=0", "infer.threshold=auto"), data)
    banded = prepare_data(tiny_config("data.val_fraction=0", "data.calibration_band=0.25",
                                      "infer.threshold=auto"), data)
    assert plain.calibration_masks == [] and banded.ignore_index == ROI_IGNORE
    for whole, kept, held in zip(plain.train_masks, banded.train_masks,
                                 banded.calibration_masks, strict=True):
        in_band = held != ROI_IGNORE
        assert in_band.any(axis=1).sum() == round(0.25 * whole.shape[0])
        assert np.all(kept[in_band] == ROI_IGNORE)
        assert np.array_equal(held[in_band], whole[in_band])
        assert np.array_equal(kept[~in_band], whole[~in_band])
    for other in (["data.val_fraction=0.34", "infer.threshold=auto"],  # validation calibrates
                  ["data.val_fraction=0"]):  # nothing to calibrate
        unbanded = prepare_data(tiny_config("data.calibration_band=0.25", *other), data)
        assert unbanded.calibration_masks == []
