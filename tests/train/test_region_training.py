"""Region-based training on generated nested regions: 2D and 3D nnU-Net folders whose
dataset.json declares regions train (one sigmoid output per region), validate per region and
predict label maps painted in regions_class_order; regions set by hand for PNG data; refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.io import read_image, read_mask
from unetkit.data.synthetic_regions import make_nested, write_nested_dataset
from unetkit.infer.predictor import Predictor
from unetkit.losses.regions import RegionLoss
from unetkit.metrics.regions import region_case_metrics
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train import builders
from unetkit.train.data import DataError, prepare_data
from unetkit.train.fit import fit
from unetkit.train.run_dir import read_metrics

BRATS = [[1, 2, 3], [2, 3], [3]]
NAMES = ["whole_tumor", "tumor_core", "enhancing_tumor"]


@pytest.mark.parametrize("shape,overrides", [
    ((32, 32), ()),
    ((16, 16, 16), ("model.spatial_dims=3", "data.patch_size=[16, 16, 16]")),
])
def test_nested_regions_train_validate_and_predict_painted_labels(tmp_path, tiny_config, shape,
                                                                  overrides) -> None:
    data = write_nested_dataset(tmp_path / "Dataset001_Nested", 4, shape)
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["nested_000", "nested_001", "nested_002"],
                                     "val": ["nested_003"]}))
    config = tiny_config(*overrides, "train.epochs=1", "train.steps_per_epoch=3",
                         f"data.split_file={split}")
    result = fit(config, data, tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    stored = checkpoint["config"]["data"]
    assert [r["labels"] for r in stored["regions"]] == BRATS
    assert [r["name"] for r in stored["regions"]] == NAMES
    assert stored["regions_class_order"] == [1, 2, 3]
    assert checkpoint["config"]["model"]["out_channels"] == 3  # a sigmoid per region
    assert checkpoint["labels"] == {0: "background", 1: "whole_tumor", 2: "tumor_core",
                                    3: "enhancing_tumor"}
    assert {f"dice_{n}" for n in NAMES} <= set(read_metrics(tmp_path / "run" / "metrics.csv")[-1])
    row = result.history[-1]
    assert row["val_dice"] == pytest.approx(np.nanmean([row[f"dice_{n}"] for n in NAMES]))

    # prediction paints each region where its sigmoid exceeds 0.5, in regions_class_order
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt")
    image, geometry = read_image(data / "imagesTr" / "nested_003_0000.nii.gz")
    prediction = predictor.predict(image, spacing=geometry.spacing)
    x, record = predictor.preprocess(image, spacing=geometry.spacing)
    logits = predictor.restore(predictor.predict_logits(x), record)
    painted = np.zeros(shape, np.uint8)
    for region, label in enumerate([1, 2, 3]):
        painted[(logits[region] > 0).numpy()] = label
    assert np.array_equal(prediction.labels, painted)
    assert prediction.probabilities.shape == (3, *shape)
    # validation is prediction: the logged Dice per region is this prediction's
    truth, _ = read_mask(data / "labelsTr" / "nested_003.nii.gz")
    dice = region_case_metrics(prediction.labels, truth, BRATS, metrics=("dice",))
    for index, name in enumerate(NAMES, start=1):
        assert np.isclose(dice[index]["dice"], row[f"dice_{name}"], atol=1e-9, equal_nan=True)


def write_png_nested(root, n_cases: int = 3, size: int = 32):
    """``images/`` + ``masks/`` PNGs of nested discs (labels 0..3 stored as they are)."""
    rng = np.random.default_rng(5)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        image, mask = make_nested((size, size), rng)
        Image.fromarray(np.clip(60 * image[0] + 20, 0, 255).astype(np.uint8)).save(
            root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    return root


def test_regions_set_by_hand_for_png_data(tmp_path, tiny_config) -> None:
    data = write_png_nested(tmp_path / "png")
    config = tiny_config("data.regions={outer: [1, 2, 3], inner: [3]}",
                         "data.regions_class_order=[1, 3]", "data.labels={0: bg, 1: ring, "
                         "2: shell, 3: core}")
    prepared = prepare_data(config, data)
    assert prepared.scored == {1: "outer", 2: "inner"}
    resolved = builders.resolve_model_config(config, prepared)
    assert resolved.model.out_channels == 2
    loss = builders.build_loss_fn(resolved)
    assert isinstance(loss, RegionLoss) and loss.regions == [[1, 2, 3], [3]]
    # the loss sees the masks' regions: a perfect logit map scores a small loss
    mask = torch.from_numpy(prepared.train_masks[0])[None]
    perfect = torch.stack([torch.isin(mask, torch.tensor(r)) for r in loss.regions], 1)
    assert loss(perfect.float() * 40 - 20, mask).item() < 1e-3
    fit(config, data, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "best.pt")["config"]["data"]["regions"] == [
        {"name": "outer", "labels": [1, 2, 3]}, {"name": "inner", "labels": [3]}]
    # no dataset.json: evaluate scores the regions predict.json recorded from the model
    pred = tmp_path / "pred"
    runner = CliRunner()
    done = runner.invoke(app, ["predict", str(tmp_path / "run" / "best.pt"),
                               str(data / "images"), "-o", str(pred), "-q"])
    assert done.exit_code == 0, done.output
    assert set(np.unique(np.array(Image.open(pred / "c0.png"))).tolist()) <= {0, 1, 3}
    done = runner.invoke(app, ["evaluate", str(pred), str(data / "masks"), "-o",
                               str(tmp_path / "eval")])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["labels"] == {"1": "outer", "2": "inner"}


def test_region_runs_refuse_conflicting_settings_in_one_line(tmp_path, tiny_config) -> None:
    data = write_nested_dataset(tmp_path / "nested", 3, (24, 24))
    with pytest.raises(ValueError, match=r"model.out_channels 4: a region model has one sigmoid "
                                         r"output per region \(3: whole_tumor"):
        fit(tiny_config("model.out_channels=4"), data, tmp_path / "a")
    with pytest.raises(ValueError, match="infer.threshold: auto calibrates a two-class"):
        fit(tiny_config("infer.threshold=auto"), data, tmp_path / "b")
    # regions set by hand whose labels miss a value the masks hold: the mask file is named
    png = write_png_nested(tmp_path / "png", n_cases=2)
    config = tiny_config("data.regions=[[1, 2], [2]]", "data.regions_class_order=[1, 2]")
    with pytest.raises(DataError, match=r"masks/c\d.png: mask values \[3\] are not among the "
                                        r"labels \[0, 1, 2\]"):
        prepare_data(config, png, check=False)
