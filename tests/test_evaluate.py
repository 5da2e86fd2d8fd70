"""``unetkit evaluate``: values equal the metrics module's; the HTML report works in Chromium."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.evaluate import EVAL_METRICS, case_key, evaluate_folders, match_cases
from unetkit.metrics import aggregate, case_metrics
from unetkit.report import overlay_image, render_html_report, write_html_report

runner = CliRunner()
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def make_cases(root: Path, n: int = 4, seed: int = 0) -> tuple[Path, Path, dict]:
    """Ground-truth discs/squares and perturbed predictions as 0..2 PNG label maps."""
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    pairs = {}
    yy, xx = np.mgrid[:48, :40]
    for i in range(n):
        gt = np.zeros((48, 40), np.uint8)
        gt[(yy - 20) ** 2 + (xx - 18) ** 2 < (6 + 2 * i) ** 2] = 1
        gt[30:40, 25:35] = 2
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.05 * (i + 1)] = 0
        pred[5 + i:10 + i, 2:8] = 1
        if i == 0:
            pred[pred == 2] = 0  # class 2 missed entirely
        Image.fromarray(gt).save(gt_dir / f"case{i}_mask.png")
        Image.fromarray(pred).save(pred_dir / f"case{i}.png")
        pairs[f"case{i}"] = (pred, gt)
    return pred_dir, gt_dir, pairs


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_case_matching(tmp_path) -> None:
    assert case_key(Path("a/case_01_seg.nii.gz")) == "case_01"
    assert case_key(Path("b/case_01.png")) == "case_01"
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=3)
    (pred_dir / "case1.png").unlink()
    pairs, missing = match_cases(pred_dir, gt_dir)
    assert [p[0] for p in pairs] == ["case0", "case2"] and missing == ["case1"]


def test_values_equal_metrics_module(tmp_path) -> None:
    pred_dir, gt_dir, pairs = make_cases(tmp_path)
    out = tmp_path / "eval"
    result = evaluate_folders(pred_dir, gt_dir, out, spacing=(0.5, 2.0), tau=1.5)
    assert result.labels == {1: "class1", 2: "class2"}
    expected = {case: case_metrics(pred, gt, [1, 2], spacing=(0.5, 2.0),
                                   metrics=EVAL_METRICS, tau=1.5)
                for case, (pred, gt) in pairs.items()}
    rows = read_csv(out / "per_case.csv")
    assert len(rows) == 4 * 2
    for row in rows:
        ref = expected[row["case"]][int(row["label"])]
        for metric in EVAL_METRICS:
            value = float(row[metric]) if row[metric] else math.nan
            assert value == pytest.approx(ref[metric], nan_ok=True, rel=1e-9), metric
    assert rows[0]["case"] == "case0" and float(rows[1]["dice"]) == 0.0  # class 2 missed
    summary = json.loads((out / "summary.json").read_text())
    ref_summary = aggregate(expected)
    assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx(
        ref_summary["per_class"][1]["dice"]["mean"])
    assert summary["foreground_mean"]["hd95"] == pytest.approx(
        ref_summary["foreground_mean"]["hd95"])


def test_spacing_from_nifti_headers(tmp_path) -> None:
    gt = np.zeros((12, 10, 6), np.uint8)
    gt[3:8, 2:7, 1:5] = 1
    pred = np.roll(gt, 1, axis=2)
    for folder, data in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 3.0, 1.0])),
                 tmp_path / folder / "vol.nii.gz")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    ref = case_metrics(pred, gt, [1], spacing=(0.7, 0.7, 3.0), metrics=EVAL_METRICS)
    assert result.per_case["vol"][1]["hd95"] == pytest.approx(ref[1]["hd95"])
    assert result.per_case["vol"][1]["volume_difference"] == pytest.approx(0.0)


def test_masks_stored_as_255_are_read_as_label_one(tmp_path) -> None:
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    full = np.full((8, 8), 255, np.uint8)
    half = np.zeros((8, 8), np.uint8)
    half[:4] = 255
    Image.fromarray(full).save(tmp_path / "pred" / "a.png")  # only 255: still label 1
    Image.fromarray(half).save(tmp_path / "gt" / "a.png")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    assert result.labels == {1: "class1"}
    assert result.per_case["a"][1]["dice"] == pytest.approx(2 * 32 / (64 + 32))


def test_cli_evaluate_writes_report_folder(tmp_path) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=3)
    (pred_dir / "case2.png").unlink()
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", str(pred_dir), str(gt_dir), "--labels",
                                 "1=disc,2=square", "-o", str(out)])
    assert result.exit_code == 1  # one case without prediction is reported
    assert "case2" in result.output
    for name in ("per_case.csv", "summary.json", "report.html"):
        assert (out / name).is_file()
    assert {row["name"] for row in read_csv(out / "per_case.csv")} == {"disc", "square"}
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3  # box plots + overlays, inline
    assert "<script>" in page and "http" not in page.split("<body>")[1]  # nothing external
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), str(gt_dir)])
    assert missing.exit_code == 2


def test_overlay_colours_prediction_and_outlines_truth() -> None:
    image = np.zeros((1, 10, 10), np.float32)
    pred = np.zeros((10, 10), np.uint8)
    pred[2:5, 2:5] = 1
    gt = np.zeros((10, 10), np.uint8)
    gt[5:9, 5:9] = 1
    rgb = overlay_image(image, pred, gt)
    assert rgb.shape == (10, 10, 3)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert rgb[3, 3, 0] > 50 and rgb[3, 3, 1] < rgb[3, 3, 0]  # red tint (PALETTE[1])
    # truth outlined just outside its square (rows/columns 4 and 9), its inside left as is
    assert tuple(rgb[4, 6]) == tuple(rgb[6, 4]) == tuple(rgb[9, 7]) == (255, 255, 0)
    assert tuple(rgb[5, 5]) == tuple(rgb[6, 6]) == (0, 0, 0)
    volume = np.zeros((4, 4, 5), np.uint8)
    volume[1:3, 1:3, 3] = 1
    assert overlay_image(np.zeros((1, 4, 4, 5)), volume).shape == (4, 4, 3)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary, installed with apt-get when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("Chromium is not installed and apt-get is not available to install it")
    for command in ([apt, "install", "-y", "chromium"], [apt, "update"],
                    [apt, "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, timeout=900)
        if command[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("chromium")
    if not found:
        pytest.skip("Chromium could not be installed with apt-get (no root or no network)")
    return found


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([binary, *flags, *args], capture_output=True, encoding="utf-8",
                          errors="replace", timeout=120)


@pytest.mark.browser
def test_html_report_in_headless_chromium(tmp_path, chromium) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path)
    result = evaluate_folders(pred_dir, gt_dir, tmp_path / "eval", report=write_html_report)
    page = result.files["html"]
    url = page.resolve().as_uri()
    dom = _chromium(chromium, tmp_path / "profile1", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="cases" class="sortable">' in dom.stdout
    assert dom.stdout.count("<tr>") >= 4 * 2 + 3
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "error" in line.lower() or "uncaught" in line.lower()]
    assert not errors, errors
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "evaluation_report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(chromium, tmp_path / "profile2", f"--screenshot={shot}",
                     "--window-size=1280,1600", "--hide-scrollbars", url)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert Image.open(shot).size == (1280, 1600)


def test_render_escapes_names(tmp_path) -> None:
    pred_dir, gt_dir, _ = make_cases(tmp_path, n=2)
    result = evaluate_folders(pred_dir, gt_dir, labels={1: "<b>x</b>", 2: "y"})
    page = render_html_report(result, [])
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
