"""``unetkit evaluate`` for a new user: nnU-Net names and case ids, units, readable numbers,
best and worst cards that never repeat a case."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from tests.test_evaluate import make_cases
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.synthetic import write_blobs_dataset
from unetkit.evaluate import best_and_worst, evaluate_folders, format_value, match_cases
from unetkit.report import write_html_report
from unetkit.report.overlays import FALSE_POSITIVE

runner = CliRunner()


def flat(text: str) -> str:
    """Console output on one line (rich may wrap a table's headers)."""
    return " ".join(text.split())


def nnunet_test_set(root: Path, cases: tuple[int, ...] = (1, 2)) -> Path:
    """A two-channel nnU-Net data set with ``imagesTs/`` + ``labelsTs/`` copied from training."""
    write_blobs_dataset(root, 3, size=(20, 24, 16), channels=2, num_classes=3)
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    for i in cases:
        for c in (0, 1):
            shutil.copy(root / "imagesTr" / f"blobs_{i:03d}_{c:04d}.nii.gz", root / "imagesTs")
        shutil.copy(root / "labelsTr" / f"blobs_{i:03d}.nii.gz", root / "labelsTs")
    return root


def test_nnunet_predict_then_evaluate_pairs_case_ids_and_uses_dataset_json_names(
        make_checkpoint, tmp_path) -> None:
    root = nnunet_test_set(tmp_path / "Dataset001_Blobs")
    ckpt = make_checkpoint(in_channels=2, spatial_dims=3, out_channels=3)
    pred, out = tmp_path / "pred", tmp_path / "eval"
    done = runner.invoke(app, ["predict", str(ckpt), str(root / "imagesTs"), "-o", str(pred),
                               "--quiet"])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in pred.glob("*.nii.gz")) == ["blobs_001.nii.gz",
                                                             "blobs_002.nii.gz"]
    done = runner.invoke(app, ["evaluate", str(pred), str(root / "labelsTs"), "-o", str(out),
                               "--images", str(root / "imagesTs")])
    assert done.exit_code == 0, done.output
    text = flat(done.output)
    assert "1 blob1" in text and "2 blob2" in text and "class1" not in text
    assert "2 cases" in text and "[mm]" in text and "[mm³]" in text
    with (out / "per_case.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["case"] for r in rows} == {"blobs_001", "blobs_002"}
    assert {r["name"] for r in rows} == {"blob1", "blob2"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == {"1": "blob1", "2": "blob2"}
    assert summary["units"] == {"hd95": "mm", "assd": "mm", "volume_difference": "mm³"}
    page = (out / "report.html").read_text()
    assert "blob1" in page and "hd95 [mm]" in page and "volume_difference [mm³]" in page
    assert "volumes in mm³ (1 ml = 1,000 mm³)" in page


def test_labels_option_overrides_and_unnamed_labels_take_dataset_json_names(tmp_path) -> None:
    root = nnunet_test_set(tmp_path / "Dataset001_Blobs")
    pred = root / "labelsTs"  # the truth scored against itself: names are the point here
    result = evaluate_folders(pred, root / "labelsTs", labels={1: "liver"})
    assert result.labels == {1: "liver"}
    result = evaluate_folders(pred, root / "labelsTs", labels={1: "", 2: ""})
    assert result.labels == {1: "blob1", 2: "blob2"}
    done = runner.invoke(app, ["evaluate", str(pred), str(root / "labelsTs"), "--labels",
                               "2=tumour", "-o", str(tmp_path / "e")])
    assert done.exit_code == 0, done.output
    assert "2 tumour" in flat(done.output) and "blob2" not in flat(done.output)


def test_predictions_that_keep_the_channel_suffix_pair_with_the_case(tmp_path) -> None:
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:4, 2:5, 1:3] = 1
    for name, folder in (("case_a_0000", "pred"), ("case_a", "gt"), ("case_b", "pred"),
                         ("case_b", "gt")):
        nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / folder / f"{name}.nii.gz")
    pairs, missing = match_cases(tmp_path / "pred", tmp_path / "gt")
    assert [(key, p.name) for key, p, _ in pairs] == [("case_a", "case_a_0000.nii.gz"),
                                                      ("case_b", "case_b.nii.gz")]
    assert missing == []


def test_units_follow_the_spacing(tmp_path) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path)
    result = evaluate_folders(pred_dir, gt_dir, tmp_path / "e1", report=write_html_report)
    assert result.units == {"hd95": "pixels", "assd": "pixels", "volume_difference": "pixels"}
    assert json.loads((tmp_path / "e1" / "summary.json").read_text())["units"] == result.units
    page = (tmp_path / "e1" / "report.html").read_text()
    assert "<th>hd95 [pixels]</th>" in page and "Distances in pixels" in page
    assert "volumes in pixels;" in page and " ml" not in page
    assert result.summary["surface_dice_tolerance"] == "1 pixel"
    assert evaluate_folders(pred_dir, gt_dir, tau=2).summary["surface_dice_tolerance"] == (
        "2 pixels")
    given = evaluate_folders(pred_dir, gt_dir, spacing=(0.5, 0.5))
    assert given.units == {"hd95": "mm", "assd": "mm", "volume_difference": "mm²"}
    assert given.summary["surface_dice_tolerance"] == "1 mm"


def test_console_shows_units_and_volumes_without_exponents(tmp_path) -> None:
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    gt = np.zeros((24, 24, 24), np.uint8)
    gt[2:22, 2:22, 2:22] = 1  # 8,000 voxels of 1 mm³, none predicted
    nib.save(nib.Nifti1Image(gt, np.eye(4)), tmp_path / "gt" / "v.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros_like(gt), np.eye(4)), tmp_path / "pred" / "v.nii.gz")
    done = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"),
                               "-o", str(tmp_path / "e")])
    assert done.exit_code == 0, done.output
    text = flat(done.output)
    assert "-8,000" in text and not re.search(r"\de[+-]\d", text)
    assert "[mm]" in text and "[mm³]" in text


@pytest.mark.parametrize(("value", "text"), [
    (27390.0, "27,390"), (-8000.0, "-8,000"), (0.91234, "0.9123"), (123.456, "123.5"),
    (0.0, "0"), (1e-5, "1.00e-05"), (float("nan"), "-"), (float("inf"), "inf"), (12, "12")])
def test_format_value(value, text) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(("n", "best", "worst"), [(1, 1, 0), (2, 1, 1), (3, 2, 1), (4, 2, 2),
                                                  (7, 3, 3)])
def test_best_and_worst_never_repeat_a_case(tmp_path, n, best, worst) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=n)
    result = evaluate_folders(pred_dir, gt_dir)
    chosen = best_and_worst(result)
    cases = [case for _, case in chosen]
    assert len(cases) == len(set(cases)) == best + worst
    assert [kind for kind, _ in chosen] == ["best"] * best + ["worst"] * worst


def test_report_cards_show_the_error_map_and_both_kinds(tmp_path) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=2)
    result = evaluate_folders(pred_dir, gt_dir, tmp_path / "e", report=write_html_report)
    page = result.files["html"].read_text()
    assert page.count('<div class="card">') == 2
    assert 'alt="best: ' in page and 'alt="worst: ' in page
    card = page.split('<div class="card">')[1]
    data = re.search(r'src="data:image/png;base64,([^"]+)"', card).group(1)
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert (picture == FALSE_POSITIVE).all(-1).any()


def test_overlays_without_their_image_say_so(tmp_path, caplog) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=2)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((48, 40), np.uint8)).save(images / "case0_0000.png")  # by case id
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(images / "case1.png")     # wrong size
    with caplog.at_level("WARNING", logger="unetkit.evaluate.folders"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "e", images_dir=images,
                         report=write_html_report)
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("case0:") for m in messages), messages
    assert any(m.startswith("case1: image size (10, 10) differs") for m in messages), messages
    (images / "case1.png").unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="unetkit.evaluate.folders"):
        evaluate_folders(pred_dir, gt_dir, tmp_path / "e", images_dir=images,
                         report=write_html_report, force=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"case1: no image in {images} for the overlay (drawn on black)"]
