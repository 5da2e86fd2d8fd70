"""Regions of interest as input: found, paired like masks, read as bool, checked by the doctor."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.dataset import Case, DatasetError, discover_cases, find_roi_dir, scan_dataset
from unetkit.data.doctor import check_dataset
from unetkit.data.io import Geometry, write_image, write_mask
from unetkit.data.roi import ROI_IGNORE, load_roi, mark_outside, read_roi

runner = CliRunner()


def _disc(shape=(16, 20)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) / 2 - 1) ** 2


def _mask(shape=(16, 20)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[6:10, 7:12] = 1
    return mask


def _dataset(root, n=3, roi_folder="roi", roi_suffix=".png"):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / "images" / f"c{i}.png", rng.integers(0, 255, (1, 16, 20), np.uint8))
        write_mask(root / "masks" / f"c{i}.png", _mask())
        if roi_folder:
            write_mask(root / roi_folder / f"c{i}{roi_suffix}", _disc(), png_values="255")
    return root


@pytest.mark.parametrize("folder", ["roi", "fov"])
def test_roi_and_fov_folders_are_found_and_paired(tmp_path, folder):
    root = _dataset(tmp_path, roi_folder=folder)
    scan = scan_dataset(root)
    assert scan.roi_dir == root / folder
    assert [c.roi_path for c in scan.cases] == [root / folder / f"c{i}.png" for i in range(3)]
    assert scan.unpaired_rois == [] and scan.cases_without_roi == []
    assert [c.roi_path.name for c in discover_cases(root)] == ["c0.png", "c1.png", "c2.png"]
    report = check_dataset(root)
    assert report.ok and report.warnings == [], report.errors + report.warnings
    assert ("regions of interest", str(root / folder)) in report.summary_rows()


def test_no_roi_folder_means_no_roi(tmp_path):
    root = _dataset(tmp_path, roi_folder=None)
    assert scan_dataset(root).roi_dir is None
    assert all(c.roi_path is None for c in discover_cases(root))
    assert Case("a", (tmp_path / "a.png",), None).roi_path is None


def test_roi_dir_relative_absolute_missing_and_ambiguous(tmp_path):
    root = _dataset(tmp_path / "data", roi_folder="field")
    assert find_roi_dir(root) is None  # only roi/ and fov/ are found unnamed
    assert find_roi_dir(root, "field") == root / "field"
    assert find_roi_dir(root, root / "field") == root / "field"
    assert discover_cases(root, roi_dir="field")[0].roi_path == root / "field" / "c0.png"
    with pytest.raises(DatasetError, match="nowhere: region-of-interest folder"):
        find_roi_dir(root, "nowhere")
    (root / "roi").mkdir()
    (root / "fov").mkdir()
    with pytest.raises(DatasetError, match="both fov/ and roi/|both roi/ and fov/"):
        scan_dataset(root)
    report = check_dataset(root)
    assert not report.ok and "data.roi_dir" in report.errors[0]


def test_read_load_and_mark_outside(tmp_path):
    root = _dataset(tmp_path)
    case = discover_cases(root)[0]
    roi, _ = read_roi(case.roi_path)
    assert roi.dtype == bool and np.array_equal(roi, _disc())
    assert np.array_equal(load_roi(case, (16, 20)), _disc())
    assert load_roi(Case("x", case.image_paths, case.mask_path), (16, 20)) is None
    with pytest.raises(DatasetError, match=r"c0.png: region of interest shape \(16, 20\)"):
        load_roi(case, (16, 21))
    mask = _mask()
    mask[0, 0] = 1  # foreground outside the disc
    marked = mark_outside(mask, roi)
    assert ROI_IGNORE == 255
    assert marked[0, 0] == ROI_IGNORE and np.array_equal(marked[roi], mask[roi])
    assert mask[0, 0] == 1  # a copy
    assert mark_outside(mask, None) is mask


def test_doctor_reports_every_roi_problem_by_file(tmp_path):
    root = _dataset(tmp_path, n=2)
    rng = np.random.default_rng(1)
    for name in ("lonely", "small", "grey", "outside", "empty", "dup"):
        write_image(root / "images" / f"{name}.png", rng.integers(0, 255, (1, 16, 20), np.uint8))
        write_mask(root / "masks" / f"{name}.png", _mask())
    write_mask(root / "roi" / "orphan.png", _disc(), png_values="255")      # no image
    write_mask(root / "roi" / "small.png", np.ones((8, 8), np.uint8))        # shape
    grey = _disc().astype(np.uint8) * 255
    grey[0, :5] = [10, 20, 30, 40, 50]
    write_mask(root / "roi" / "grey.png", grey)                              # > 2 values
    outside = np.zeros((16, 20), np.uint8)
    outside[:, :9] = 1
    write_mask(root / "roi" / "outside.png", outside)                        # fg outside
    write_mask(root / "roi" / "empty.png", np.zeros((16, 20), np.uint8))     # empty
    write_mask(root / "roi" / "dup.png", _disc())
    write_mask(root / "roi" / "dup_0000.png", _disc())                       # duplicate
    report = check_dataset(root)
    errors, warnings = "\n".join(report.errors), "\n".join(report.warnings)
    expectations = [
        (errors, "lonely.png", "image without a region of interest"),
        (errors, "orphan.png", "region of interest without a matching image"),
        (errors, "small.png", "region of interest shape (8, 8) differs from image shape"),
        (errors, "grey.png", "region of interest holds 7 values"),
        (warnings, "outside.png", "the mask has foreground outside the region of interest"),
        (warnings, "empty.png", "region of interest is empty"),
        (errors, "dup_0000.png", "a second region of interest"),
    ]
    for text, name, phrase in expectations:
        lines = [line for line in text.splitlines() if name in line]
        assert any(phrase in line for line in lines), (name, phrase, lines)
    assert not any("c0.png" in line or "c1.png" in line for line in report.errors)


def test_doctor_checks_3d_nifti_roi_shape_geometry_and_values(tmp_path):
    geometry = Geometry(spacing=(1.0, 1.0, 2.0), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:4, 1:4, 1:3] = 1
    for name in ("ok", "shape", "spacing", "values", "outside"):
        write_image(tmp_path / "imagesTr" / f"{name}_0000.nii.gz",
                    np.ones((1, 6, 7, 5), np.int16), geometry)
        write_mask(tmp_path / "labelsTr" / f"{name}.nii.gz", mask, geometry)
    inside = np.ones((6, 7, 5), np.uint8)
    write_mask(tmp_path / "roi" / "ok.nii.gz", inside, geometry)
    write_mask(tmp_path / "roi" / "shape.nii.gz", np.ones((6, 7, 4), np.uint8), geometry)
    write_mask(tmp_path / "roi" / "spacing.nii.gz", inside,
               Geometry(spacing=(1.0, 1.0, 3.0), affine=np.diag([1.0, 1.0, 3.0, 1.0])))
    three = inside.copy()
    three[0, 0, :3] = [2, 3, 0]
    write_mask(tmp_path / "roi" / "values.nii.gz", three, geometry)
    partial = inside.copy()
    partial[:2] = 0
    write_mask(tmp_path / "roi" / "outside.nii.gz", partial, geometry)
    report = check_dataset(tmp_path)
    errors, warnings = "\n".join(report.errors), "\n".join(report.warnings)
    assert "shape.nii.gz: region of interest shape (6, 7, 4) differs" in errors
    assert "spacing.nii.gz: spacing 1x1x3 differs from the image's 1x1x2" in errors
    assert "values.nii.gz: region of interest holds 4 values" in errors
    assert "outside.nii.gz: the mask has foreground outside the region" in warnings
    assert "ok.nii.gz" not in errors + warnings
    assert discover_cases(tmp_path)[0].roi_path == tmp_path / "roi" / "ok.nii.gz"
    assert load_roi(discover_cases(tmp_path)[0], (6, 7, 5)).all()


def test_cli_check_with_a_named_roi_folder(tmp_path):
    root = _dataset(tmp_path, roi_folder="field")
    write_mask(root / "field" / "stray.png", _disc(), png_values="255")
    result = runner.invoke(app, ["check", str(root), "--roi", "field"])
    assert result.exit_code == 1
    assert "stray.png" in result.output and "region of interest without a matching image" in \
        " ".join(result.output.split())
    (root / "field" / "stray.png").unlink()
    assert runner.invoke(app, ["check", str(root), "--roi", "field"]).exit_code == 0
    missing = runner.invoke(app, ["check", str(root), "--roi", "nowhere"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
