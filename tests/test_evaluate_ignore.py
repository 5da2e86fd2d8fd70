"""`unetkit evaluate` with sparse ground truth: pixels of the ignore label count nowhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.evaluate import evaluate_folders

runner = CliRunner()


def write_pair(root, ignore: int):
    """One 4x6 case: the prediction, and a truth whose right half is unlabelled."""
    gt = np.array([[0, 1, 1, ignore, ignore, ignore],
                   [0, 1, 0, ignore, ignore, ignore],
                   [0, 0, 0, ignore, ignore, ignore],
                   [1, 1, 0, ignore, ignore, ignore]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 1, 0],
                     [1, 1, 0, 1, 0, 0],
                     [0, 0, 0, 0, 1, 1],
                     [0, 1, 0, 1, 1, 1]], np.uint8)
    for name, array in (("pred", pred), ("gt", gt)):
        (root / name).mkdir(parents=True)
        Image.fromarray(array).save(root / name / "case.png")
    return root / "pred", root / "gt"


def test_evaluate_skips_ignored_pixels_given_as_an_option(tmp_path):
    pred, gt = write_pair(tmp_path, ignore=7)
    # labelled left half: tp 4 (1,1 1,2 2,1 4,2), fp 1 (row 2 col 1), fn 1 (row 4 col 1)
    result = runner.invoke(app, ["evaluate", str(pred), str(gt), "--ignore-label", "7",
                                 "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["ignore_label"] == 7 and list(summary["per_class"]) == ["1"]
    assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    plain = evaluate_folders(pred, gt)  # without it, 7 is a class and the right half counts
    assert sorted(plain.labels) == [1, 7]
    assert plain.per_case["case"][1]["dice"] != pytest.approx(0.8)


def test_evaluate_finds_the_ignore_label_in_dataset_json(tmp_path):
    pred, gt = write_pair(tmp_path, ignore=2)
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "thing": 1, "ignore": 2}}))
    result = evaluate_folders(pred, gt)
    assert result.labels == {1: "thing"} and result.summary["ignore_label"] == 2
    assert result.per_case["case"][1]["dice"] == pytest.approx(0.8)
