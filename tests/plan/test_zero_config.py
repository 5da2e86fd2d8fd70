"""End to end with no config: `unetkit train --data DIR --time T` plans a 3D data set in nnU-Net
layout, trains, and `unetkit predict` writes one NIfTI per case in each input's geometry."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.synthetic import write_blobs_dataset

pytestmark = pytest.mark.slow


def test_zero_config_train_then_predict_keeps_each_inputs_geometry(tmp_path) -> None:
    data = write_blobs_dataset(tmp_path / "Dataset001_Blobs", 5, (20, 24, 16),
                               spacing=(1.5, 1.0, 1.0))
    run, pred = tmp_path / "run", tmp_path / "pred"
    done = CliRunner().invoke(app, ["train", "--data", str(data), "--time", "25s", "--out",
                                    str(run), "--device", "cpu", "-q"])
    assert done.exit_code == 0, done.output
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    slices = 2 * plan["data"]["slice_context"] + 1 if plan["data"]["slice_axis"] is not None \
        else 1  # a 2.5D plan feeds neighbouring slices as channels
    assert plan["model"]["in_channels"] == slices and plan["model"]["out_channels"] == 3
    assert json.loads((run / "fingerprint.json").read_text())["cases"] == 5
    assert "model.spatial_dims" in (run / "plan.yaml").read_text()  # decisions with reasons
    done = CliRunner().invoke(app, ["predict", str(run / "best.pt"), str(data / "imagesTr"),
                                    "-o", str(pred), "-q"])
    assert done.exit_code == 0, done.output
    for i in range(5):
        image = nib.load(str(data / "imagesTr" / f"blobs_{i:03d}_0000.nii.gz"))
        mask = nib.load(str(pred / f"blobs_{i:03d}.nii.gz"))
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine)
        assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1, 2}
