"""2.5D end to end: a 2D network trained on the slices of volumes with their neighbours as
channels validates exactly as ``unetkit predict`` + ``unetkit evaluate`` score it, and its
predictions keep each volume's shape and affine."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.synthetic import write_blobs_dataset
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train.fit import fit

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_a_2_5d_run_predicts_what_it_validated(tmp_path, tiny_config) -> None:
    data = write_blobs_dataset(tmp_path / "Dataset002_Blobs", 4, (12, 24, 20), seed=1)
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["blobs_000", "blobs_001"],
                                     "val": ["blobs_002", "blobs_003"]}))
    config = tiny_config(f"data.split_file={split}", "model.spatial_dims=2",
                         "data.slice_axis=0", "data.slice_context=1", "data.patch_size=[24, 24]",
                         "model.base_width=8", "train.epochs=2", "train.steps_per_epoch=5")
    result = fit(config, data, tmp_path / "run")
    best = tmp_path / "run" / "best.pt"
    assert load_checkpoint(best)["config"]["model"]["in_channels"] == 3  # 3 slices x 1 channel

    images, labels = tmp_path / "val" / "imagesTs", tmp_path / "val" / "labelsTs"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for case in ("blobs_002", "blobs_003"):
        (images / f"{case}_0000.nii.gz").write_bytes(
            (data / "imagesTr" / f"{case}_0000.nii.gz").read_bytes())
        (labels / f"{case}.nii.gz").write_bytes((data / "labelsTr" / f"{case}.nii.gz").read_bytes())
    out = tmp_path / "pred"
    done = runner.invoke(app, ["predict", str(best), str(images), "-o", str(out), "-q"])
    assert done.exit_code == 0, done.output
    for case in ("blobs_002", "blobs_003"):
        source = nib.load(str(images / f"{case}_0000.nii.gz"))
        mask = nib.load(str(out / f"{case}.nii.gz"))
        assert mask.shape == source.shape
        np.testing.assert_allclose(mask.affine, source.affine)
    done = runner.invoke(app, ["evaluate", str(out), str(labels)])
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    dice = np.nanmean([summary["per_class"][c]["dice"]["mean"] for c in ("1", "2")])
    assert dice == pytest.approx(result.best_metric, abs=1e-9)
