"""`unetkit check DATA_DIR`: report, summary and exit code."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.io import write_image, write_mask
from unetkit.data.synthetic import write_cells_dataset

runner = CliRunner()


def test_check_clean_dataset(tmp_path):
    root = write_cells_dataset(tmp_path / "cells", n_cases=2, size=(32, 40), seed=0)
    result = runner.invoke(app, ["check", str(root)])
    assert result.exit_code == 0, result.output
    assert "cases" in result.output and "class 1" in result.output
    assert "0 error(s)" in result.output


def test_check_reports_errors_and_exits_1(tmp_path):
    root = write_cells_dataset(tmp_path / "cells", n_cases=2, size=(32, 40), seed=0)
    write_image(root / "images" / "lonely.png", np.zeros((1, 32, 40), np.uint8))
    mask = np.zeros((32, 40), np.uint8)
    mask[:3] = 5
    write_mask(root / "masks" / "cell_000.png", mask)
    result = runner.invoke(app, ["check", str(root), "--labels", "0,1"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # rich may wrap long lines
    assert "lonely.png" in output and "without a matching mask" in output
    assert "cell_000.png" in output and "[5]" in output
    assert "2 error(s)" in output


def test_check_bad_arguments(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not found" in result.output
    result = runner.invoke(app, ["check", str(tmp_path), "--labels", "a,b"])
    assert result.exit_code == 1


def test_check_prints_file_names_literally(tmp_path):
    root = write_cells_dataset(tmp_path / "cells", n_cases=1, size=(32, 40), seed=0)
    write_mask(root / "masks" / "scan[red].png", np.zeros((32, 40), np.uint8))
    result = runner.invoke(app, ["check", str(root)])
    assert result.exit_code == 1
    assert "scan[red].png" in result.output and "without a matching image" in result.output


def test_check_offset_measures_masks_drawn_off_the_images(tmp_path):
    from tests.train.test_image_offset import offset_disks

    root = offset_disks(tmp_path / "data", offset=(0.0, 0.8), n=3, size=64)
    result = runner.invoke(app, ["check", str(root), "--offset"])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "c0: mask offset [" in text
    suggested = text.split("masks lie [")[1].split("]")[0]
    dy, dx = (float(v) for v in suggested.split(","))
    assert dy == 0.0 and abs(dx - 0.8) < 0.2
