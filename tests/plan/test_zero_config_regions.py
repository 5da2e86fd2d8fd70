"""Zero config on an nnU-Net folder whose dataset.json declares regions: `unetkit train --data`
plans a region model (one sigmoid output per region), `predict` paints the regions and says so,
`evaluate` scores the regions; the planner takes regions set by hand too."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.synthetic_regions import write_nested_dataset
from unetkit.plan import planner
from unetkit.plan.user import UserChoices


def _seconds(config) -> float:
    return 0.01 * (config.model.widths or [config.model.base_width])[0]


def test_a_region_data_set_trains_predicts_and_evaluates_with_no_config(tmp_path,
                                                                        fake_steps) -> None:
    fake_steps(_seconds)  # no real timing of candidates: the test is about the regions
    data = write_nested_dataset(tmp_path / "Dataset002_Nested", 3, (24, 24))
    run, pred = tmp_path / "run", tmp_path / "pred"
    runner = CliRunner()
    done = runner.invoke(app, ["train", "--data", str(data), "--epochs", "1", "--out", str(run),
                               "--device", "cpu", "--set", "train.steps_per_epoch=1", "-q"])
    assert done.exit_code == 0, done.output
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["model"]["out_channels"] == 3 and plan["train"]["loss"]["name"] == "dice_ce"
    assert [r["name"] for r in plan["data"]["regions"]] == ["whole_tumor", "tumor_core",
                                                            "enhancing_tumor"]
    assert plan["infer"]["threshold"] is None
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["regions_class_order"] == [1, 2, 3]
    done = runner.invoke(app, ["predict", str(run / "best.pt"), str(data / "imagesTr"), "-o",
                               str(pred), "--save-probabilities"], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    assert ("decision: regions whole_tumor, tumor_core, enhancing_tumor at probability 0.50, "
            "painted as labels 1, 2, 3") in done.output
    mask = np.asarray(nib.load(str(pred / "nested_000.nii.gz")).dataobj)
    probabilities = np.asarray(nib.load(str(pred / "probabilities" / "nested_000.nii.gz"))
                               .dataobj)
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
    assert probabilities.shape == (24, 24, 3)  # one sigmoid map per region (NIfTI: last axis)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    done = runner.invoke(app, ["evaluate", str(pred), str(data / "labelsTr")])
    assert done.exit_code == 0, done.output
    assert "enhancing_tumor" in done.output
    summary = json.loads((pred / "evaluation" / "summary.json").read_text())
    assert summary["labels"] == {"1": "whole_tumor", "2": "tumor_core", "3": "enhancing_tumor"}


def test_regions_set_by_hand_plan_one_output_per_region(tmp_path, fake_steps) -> None:
    fake_steps(_seconds)
    labels = {"background": 0, "ring": 1, "shell": 2, "core": 3}  # labels only: no regions
    data = write_nested_dataset(tmp_path / "plain", 2, (24, 24), labels=labels, order=None)
    user = UserChoices({}, ["data.regions=[[1, 2, 3], [3]]", "data.regions_class_order=[1, 3]"])
    plan = planner.make_plan(data, "60s", device="cpu", user=user)
    assert plan.config.model.out_channels == 2
    assert [r.labels for r in plan.config.data.regions] == [[1, 2, 3], [3]]
    plain = planner.make_plan(data, "60s", device="cpu")
    assert plain.config.model.out_channels == 4 and plain.config.data.regions is None


def test_a_bad_region_declaration_stops_zero_config_training_in_one_line(tmp_path) -> None:
    data = write_nested_dataset(tmp_path / "bad", 2, (16, 16), order=[1, 2])
    done = CliRunner().invoke(app, ["train", "--data", str(data), "--epochs", "1", "--out",
                                    str(tmp_path / "run"), "-q"], env={"COLUMNS": "300"})
    assert done.exit_code == 1
    assert (f"{data / 'dataset.json'}: regions_class_order has 2 entries for 3 regions"
            in done.output)
    assert "Traceback" not in done.output and not (tmp_path / "run").exists()
