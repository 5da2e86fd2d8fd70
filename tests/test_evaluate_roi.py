"""``unetkit evaluate --roi`` with probability maps: a hand-computed confusion matrix and AUC,
pooled and per case; predict -> evaluate end to end; the report's ROC/PR curves in Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.io import Geometry, write_image
from unetkit.evaluate import evaluate_folders
from unetkit.infer.predictor import Predictor
from unetkit.metrics import case_metrics
from unetkit.metrics.probability import binary_scores
from unetkit.report import write_html_report

runner = CliRunner()

# Two 2x4 cases. Foreground probability, ground truth, region of interest; the masks as
# written are probability >= 0.5.
PROB = {"a": [[0.90, 0.40, 0.60, 0.20],
              [0.10, 0.30, 0.80, 0.70]],
        "b": [[0.55, 0.65, 0.05, 0.45],
              [0.35, 0.15, 0.95, 0.25]]}
GT = {"a": [[1, 1, 0, 0],
            [0, 0, 0, 1]],
      "b": [[1, 0, 0, 1],
            [0, 0, 1, 0]]}
ROI = {"a": [[1, 1, 1, 1],
             [1, 1, 0, 0]],  # (1,2) a false and (1,3) a true positive lie outside
       "b": [[1, 0, 1, 1],
             [1, 1, 1, 1]]}  # (0,1) a false positive lies outside
# Inside the regions, pixel by pixel:
#   a: (0,0) .9 TP, (0,1) .4 FN, (0,2) .6 FP, (0,3) .2 TN, (1,0) .1 TN, (1,1) .3 TN
#      -> TP 1, FP 1, FN 1, TN 3; Dice 2/4
#      AUC: foreground {.9, .4} vs background {.6, .2, .1, .3}: .9 beats 4, .4 beats 3 -> 7/8
#      AP: .9 (+) P 1 R 1/2; .6 (-); .4 (+) P 2/3 R 1 -> 1/2 * 1 + 1/2 * 2/3 = 5/6
#   b: (0,0) .55 TP, (0,2) .05 TN, (0,3) .45 FN, (1,0) .35 TN, (1,1) .15 TN, (1,2) .95 TP,
#      (1,3) .25 TN -> TP 2, FP 0, FN 1, TN 4; Dice 4/5; every foreground above every
#      background: AUC 1, AP 1
# Pooled (13 pixels): TP 3, FP 1, FN 2, TN 7: accuracy 10/13, sensitivity 3/5, specificity
# 7/8, precision 3/4, F1 6/9.
#   AUC: foreground {.95, .9, .55, .45, .4} vs 8 background {.6, .35, .3, .25, .2, .15, .1,
#   .05}: .95 and .9 beat 8 each, .55, .45 and .4 beat 7 each (not .6) -> 37/40
#   AP: thresholds .95 (P 1, R .2), .9 (P 1, R .4), .6 (-), .55 (P 3/4, R .6), .45 (P 4/5,
#   R .8), .4 (P 5/6, R 1) -> .2 * (1 + 1 + 3/4 + 4/5 + 5/6)
POOLED_AP = 0.2 * (1 + 1 + 3 / 4 + 4 / 5 + 5 / 6)


def write_hand_cases(root, probabilities="npz"):
    for folder in ("pred/probabilities", "gt", "fov"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for case in ("a", "b"):
        p = np.array(PROB[case], np.float32)
        Image.fromarray(((p >= 0.5) * 255).astype(np.uint8)).save(root / "pred" / f"{case}.png")
        Image.fromarray((np.array(GT[case]) * 255).astype(np.uint8)).save(root / "gt" /
                                                                          f"{case}.png")
        Image.fromarray((np.array(ROI[case]) * 255).astype(np.uint8)).save(root / "fov" /
                                                                           f"{case}.png")
        write_image(root / "pred" / "probabilities" / f"{case}.{probabilities}",
                    np.stack([1 - p, p]))
    return root / "pred", root / "gt", root / "fov"


def rows_by_case(path):
    with path.open() as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_hand_computed_confusion_matrix_and_auc_through_the_cli(tmp_path):
    pred, gt, fov = write_hand_cases(tmp_path)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(pred), str(gt), "--roi", str(fov), "-o",
                                 str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "threshold-free scores of 2 cases" in result.output
    assert "0.9250" in result.output  # pooled AUC in the console table
    rows = rows_by_case(out / "per_case.csv")
    expected_cases = {"a": dict(tp=1, fp=1, fn=1, tn=3, dice=0.5, roc_auc=7 / 8, pr_auc=5 / 6),
                      "b": dict(tp=2, fp=0, fn=1, tn=4, dice=0.8, roc_auc=1.0, pr_auc=1.0)}
    for case, expected in expected_cases.items():
        for key, value in expected.items():
            assert float(rows[case][key]) == pytest.approx(value), (case, key)
    assert rows["a"]["tp"] == "1"  # counts are integers
    summary = json.loads((out / "summary.json").read_text())
    pooled = summary["probability"]["pooled"]
    assert (pooled["tp"], pooled["fp"], pooled["fn"], pooled["tn"]) == (3, 1, 2, 7)
    assert pooled["accuracy"] == pytest.approx(10 / 13)
    assert pooled["sensitivity"] == pytest.approx(3 / 5)
    assert pooled["specificity"] == pytest.approx(7 / 8)
    assert pooled["precision"] == pytest.approx(3 / 4)
    assert pooled["f1"] == pytest.approx(6 / 9)
    assert pooled["roc_auc"] == pytest.approx(37 / 40)
    assert pooled["pr_auc"] == pytest.approx(POOLED_AP)
    mean = summary["probability"]["mean_over_cases"]
    assert mean["roc_auc"] == pytest.approx((7 / 8 + 1) / 2)  # not the pooled 37/40
    assert summary["probability"]["per_case"]["a"]["tn"] == 3
    assert summary["roi_dir"] == str(fov)
    assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx((0.5 + 0.8) / 2)
    page = (out / "report.html").read_text()
    assert 'alt="ROC and precision-recall curves"' in page and 'id="probability"' in page


def test_without_roi_every_pixel_counts_and_nifti_maps_are_read(tmp_path):
    pred, gt, _ = write_hand_cases(tmp_path)
    result = evaluate_folders(pred, gt)
    # case a without its region: (1,2) becomes a false and (1,3) a true positive
    assert result.per_case["a"][1]["dice"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert result.probability.per_case[0]["tp"] == 2
    assert result.summary["roi_dir"] is None
    volume = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    truth = (volume + np.random.default_rng(1).normal(0, 0.3, volume.shape) > 0.6)
    roi = np.ones(volume.shape, bool)
    roi[:2] = False
    for folder, data in (("gt3", truth), ("pred3", volume >= 0.5), ("roi3", roi)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(data.astype(np.uint8), np.eye(4)),
                 tmp_path / folder / "vol.nii.gz")
    write_image(tmp_path / "pred3" / "probabilities" / "vol.nii.gz",
                np.stack([1 - volume, volume]), Geometry(spacing=(1.0, 1.0, 1.0),
                                                         affine=np.eye(4)))
    result = evaluate_folders(tmp_path / "pred3", tmp_path / "gt3", roi_dir=tmp_path / "roi3")
    expected = binary_scores([volume], [volume >= 0.5], [truth], [roi])
    assert result.probability.pooled == pytest.approx(expected)


def test_missing_files_fail_by_name(tmp_path):
    pred, gt, fov = write_hand_cases(tmp_path)
    moved = (fov / "b.png").rename(tmp_path / "b.png")
    args = ["evaluate", str(pred), str(gt), "--roi", str(fov), "-o", str(tmp_path / "eval")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "no region of interest for b" in \
        " ".join(result.output.split())
    moved.rename(fov / "b.png")
    (pred / "probabilities" / "a.npz").unlink()
    result = runner.invoke(app, [*args, "--force"])  # the first run's report is replaced
    assert result.exit_code == 1 and "no probability map for a" in \
        " ".join(result.output.split())
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["probability"]["cases"] == 1 and summary["num_cases"] == 1
    nowhere = runner.invoke(app, ["evaluate", str(pred), str(gt), "--roi",
                                  str(tmp_path / "nowhere")])
    assert nowhere.exit_code == 2 and "Traceback" not in nowhere.output


def test_probabilities_need_a_two_class_task(tmp_path):
    pred, gt, _ = write_hand_cases(tmp_path)
    Image.fromarray(np.array([[2, 0, 0, 0], [0, 0, 0, 1]], np.uint8)).save(gt / "a.png")
    Image.fromarray(np.array([[2, 0, 0, 0], [0, 0, 0, 1]], np.uint8)).save(pred / "a.png")
    quiet = evaluate_folders(pred, gt)  # found maps are left aside for a multi-class task
    assert quiet.probability is None and "probability" not in quiet.summary
    result = runner.invoke(app, ["evaluate", str(pred), str(gt), "--probabilities",
                                 str(pred / "probabilities")])
    assert result.exit_code == 2 and "two-class" in result.output


def test_predict_then_evaluate_inside_the_roi(make_checkpoint, tmp_path):
    ckpt = make_checkpoint(out_channels=2, mask_values={0: 0, 1: 255}, infer={"threshold": 0.4})
    rng = np.random.default_rng(0)
    for folder in ("images", "masks", "fov"):
        (tmp_path / folder).mkdir()
    yy, xx = np.mgrid[:20, :24]
    for case in ("p", "q"):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(
            tmp_path / "images" / f"{case}.png")
        Image.fromarray(((rng.random((20, 24)) < 0.3) * 255).astype(np.uint8)).save(
            tmp_path / "masks" / f"{case}.png")
        Image.fromarray((((yy - 10) ** 2 + (xx - 12) ** 2 < 81) * 255).astype(np.uint8)).save(
            tmp_path / "fov" / f"{case}.png")
    out = tmp_path / "pred"
    done = runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "images"), "-o", str(out),
                               "--roi", str(tmp_path / "fov"), "--save-probabilities", "-q"])
    assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["evaluate", str(out), str(tmp_path / "masks"), "--roi",
                                 str(tmp_path / "fov")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    predictor = Predictor.from_checkpoint(ckpt)
    maps, decided, truths, rois = [], [], [], []
    for case in ("p", "q"):
        prediction = predictor.predict(tmp_path / "images" / f"{case}.png")
        maps.append(prediction.probabilities[1])
        decided.append(prediction.labels > 0)
        truths.append(np.array(Image.open(tmp_path / "masks" / f"{case}.png")) > 0)
        rois.append(np.array(Image.open(tmp_path / "fov" / f"{case}.png")) > 0)
    expected = binary_scores(maps, decided, truths, rois)
    for key, value in expected.items():
        assert summary["probability"]["pooled"][key] == pytest.approx(value, abs=1e-6), key
    dice = case_metrics(np.where(rois[0], decided[0], 0), np.where(rois[0], truths[0], 0), [1])
    assert summary["per_case_foreground_mean"]["p"]["dice"] == pytest.approx(dice[1]["dice"])


@pytest.fixture
def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed (apt-get install -y chromium)")


@pytest.mark.browser
def test_report_curves_render_in_headless_chromium(tmp_path, chromium_binary):
    pred, gt, fov = write_hand_cases(tmp_path)
    result = evaluate_folders(pred, gt, tmp_path / "eval", roi_dir=fov, report=write_html_report)
    url = result.files["html"].resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([chromium_binary, *flags, f"--user-data-dir={tmp_path / 'p1'}",
                          "--dump-dom", url], capture_output=True, encoding="utf-8",
                         errors="replace", timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'alt="ROC and precision-recall curves"' in dom.stdout
    assert "pooled pixels" in dom.stdout and "0.925" in dom.stdout
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and
              ("error" in line.lower() or "uncaught" in line.lower())]
    assert not errors, errors
    shot = tmp_path / "report.png"
    done = subprocess.run([chromium_binary, *flags, f"--user-data-dir={tmp_path / 'p2'}",
                           f"--screenshot={shot}", "--window-size=1400,2000", url],
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and shot.is_file()
    assert Image.open(shot).size == (1400, 2000)
