"""`unetkit evaluate` on a data set with overlapping regions: every metric per region (the
prediction's region against the ground truth's), hand-computed Dice, dataset.json or --region."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.cli.report_commands import _metrics_table
from unetkit.config.regions import Region
from unetkit.evaluate import evaluate_folders
from unetkit.metrics.regions import region_case_metrics, region_masks

GT = np.array([[0, 1, 1, 0],
               [1, 2, 2, 1],
               [1, 2, 3, 1],
               [0, 1, 1, 0]], np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [1, 2, 3, 1],
                 [1, 1, 3, 1],
                 [0, 0, 1, 0]], np.uint8)
# whole {1,2,3}: |gt| 12, |pred| 12, overlap 11; core {2,3}: 4, 3, 3; enhancing {3}: 1, 2, 1
HAND = {1: 2 * 11 / 24, 2: 2 * 3 / 7, 3: 2 * 1 / 3}
BRATS = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": 3}


def write_folders(root, with_json: bool = True):
    """``root/labelsTs/case.png`` (+ ``root/dataset.json``) and ``root/pred/case.png``."""
    (root / "labelsTs").mkdir(parents=True)
    (root / "pred").mkdir()
    Image.fromarray(GT).save(root / "labelsTs" / "case.png")
    Image.fromarray(PRED).save(root / "pred" / "case.png")
    if with_json:
        (root / "dataset.json").write_text(json.dumps({"labels": BRATS,
                                                       "regions_class_order": [1, 2, 3]}))
    return root / "pred", root / "labelsTs"


def test_region_maps_and_region_dice_equal_hand_computed_values() -> None:
    assert region_masks(GT, [[2, 3]])[0].sum() == 4
    scores = region_case_metrics(PRED, GT, [[1, 2, 3], [2, 3], [3]], metrics=("dice", "tp"))
    assert {k: v["dice"] for k, v in scores.items()} == pytest.approx(HAND)
    assert [scores[k]["tp"] for k in (1, 2, 3)] == [11, 3, 1]


def test_evaluate_scores_the_regions_dataset_json_declares(tmp_path) -> None:
    pred, gt = write_folders(tmp_path)
    result = evaluate_folders(pred, gt, tmp_path / "eval")
    assert result.labels == {1: "whole_tumor", 2: "tumor_core", 3: "enhancing_tumor"}
    assert {k: v["dice"] for k, v in result.per_case["case"].items()} == pytest.approx(HAND)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["regions"][1] == {"name": "tumor_core", "labels": [2, 3]}
    assert summary["per_class"]["3"]["dice"]["mean"] == pytest.approx(HAND[3])
    assert summary["foreground_mean"]["dice"] == pytest.approx(sum(HAND.values()) / 3)
    # --labels scores the labels instead: label 2 alone is another number than tumour core
    labels = evaluate_folders(pred, gt, None, labels={1: "", 2: "", 3: ""})
    assert labels.regions is None
    assert labels.per_case["case"][2]["dice"] == pytest.approx(2 * 1 / 4)  # 3 vs 1 pixels


def test_the_cli_prints_regions_and_takes_them_as_options(tmp_path) -> None:
    pred, gt = write_folders(tmp_path / "a")
    done = CliRunner().invoke(app, ["evaluate", str(pred), str(gt)])
    assert done.exit_code == 0, done.output
    assert "tumor_core" in done.output and f"{HAND[2]:.4f}" in done.output
    console = Console(width=200, record=True)
    console.print(_metrics_table(evaluate_folders(pred, gt, None), "", 200))
    table = console.export_text()
    assert "region" in table and "2 tumor_core" in table
    pred, gt = write_folders(tmp_path / "b", with_json=False)  # a PNG data set: no dataset.json
    done = CliRunner().invoke(app, ["evaluate", str(pred), str(gt), "--region", "wt=1,2,3",
                                    "--region", "et=3", "-o", str(tmp_path / "e")])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["labels"] == {"1": "wt", "2": "et"}
    assert summary["per_class"]["2"]["dice"]["mean"] == pytest.approx(HAND[3])
    done = CliRunner().invoke(app, ["evaluate", str(pred), str(gt), "--region", "wt=1,x"])
    assert done.exit_code == 2 and "--region 'wt=1,x': expected NAME=LABELS" in done.output


def test_a_bad_region_declaration_stops_evaluate_with_one_line(tmp_path) -> None:
    pred, gt = write_folders(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": BRATS, "regions_class_order": [1, 2]}))
    done = CliRunner().invoke(app, ["evaluate", str(pred), str(gt)], env={"COLUMNS": "300"})
    assert done.exit_code == 2
    assert "dataset.json: regions_class_order has 2 entries for 3 regions" in done.output
    assert "Traceback" not in done.output
    assert evaluate_folders(pred, gt, None, regions=[Region(name="x", labels=[3])]).labels == {
        1: "x"}


# the same case with unlabelled pixels: the last row and the top right corner hold the ignore
# label 4, where the prediction is wrong (3, 2 is whole tumour, 0, 3 too)
IGNORED = np.zeros(GT.shape, bool)
IGNORED[3, :] = IGNORED[0, 3] = True
# on the 11 labelled pixels: whole {1,2,3} gt 10, pred 10, overlap 10; core 4, 3, 3;
# enhancing 1, 2, 1; a region holding the background, {0, 1}: gt 7, pred 8, overlap 7
HAND_LABELLED = {1: 1.0, 2: 2 * 3 / 7, 3: 2 * 1 / 3}
FIELD = 2 * 7 / 15


def test_ignored_ground_truth_pixels_count_in_no_region(tmp_path) -> None:
    pred, gt = write_folders(tmp_path)
    Image.fromarray(np.where(IGNORED, 4, GT).astype(np.uint8)).save(gt / "case.png")
    (tmp_path / "dataset.json").write_text(json.dumps({
        "labels": {**BRATS, "ignore": 4}, "regions_class_order": [1, 2, 3]}))
    result = evaluate_folders(pred, gt, tmp_path / "eval")
    assert result.summary["ignore_label"] == 4 and sorted(result.labels) == [1, 2, 3]
    assert {k: v["dice"] for k, v in result.per_case["case"].items()} == pytest.approx(
        HAND_LABELLED)
    # a region that holds the background: the ignored pixels are not background hits either
    field = evaluate_folders(pred, gt, None, regions=[Region(name="field", labels=[0, 1])])
    assert field.per_case["case"][1]["dice"] == pytest.approx(FIELD)
    assert region_case_metrics(PRED, GT, [[0, 1]], metrics=("dice",), scored=~IGNORED)[1][
        "dice"] == pytest.approx(FIELD)
    # PNG data without dataset.json: --ignore-label and --region from the command line
    (tmp_path / "dataset.json").unlink()
    done = CliRunner().invoke(app, ["evaluate", str(pred), str(gt), "--region", "wt=1,2,3",
                                    "--region", "et=3", "--ignore-label", "4", "-o",
                                    str(tmp_path / "e")])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["ignore_label"] == 4 and summary["labels"] == {"1": "wt", "2": "et"}
    assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx(1.0)
    assert summary["per_class"]["2"]["dice"]["mean"] == pytest.approx(HAND_LABELLED[3])
    counted = evaluate_folders(pred, gt, None, regions=[Region(name="wt", labels=[1, 2, 3])])
    assert counted.per_case["case"][1]["dice"] < 0.95  # without the ignore label: 4 is no region
