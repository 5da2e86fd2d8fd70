"""``unetkit check`` states units: pixels for 2D images, voxels for volumes, millimetres only
when the files say so, and that a spacing without a stored unit has none."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.doctor import check_dataset
from unetkit.data.geometry import Geometry
from unetkit.data.io import write_image, write_mask
from unetkit.data.synthetic import write_blobs_dataset, write_cells_dataset

runner = CliRunner()


def test_2d_images_are_summarised_in_pixels_without_a_made_up_spacing(tmp_path) -> None:
    root = write_cells_dataset(tmp_path / "cells", 2, (32, 40), rgb=True)
    rows = dict(check_dataset(root).summary_rows())
    assert rows["size (min / median / max)"] == "32x40 / 32x40 / 32x40 pixels"
    assert rows["spacing"] == "none stored in the files: sizes and distances count pixels"
    assert rows["class 1"].endswith("% of pixels, in 2 cases")
    assert rows["channels"] == "3"
    done = runner.invoke(app, ["check", str(root)])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "% of pixels" in text and "voxels" not in text and "1x1" not in text


def test_volumes_with_an_affine_are_summarised_in_voxels_and_mm(tmp_path) -> None:
    root = write_blobs_dataset(tmp_path / "blobs", 2, (16, 16, 12), spacing=(0.8, 0.8, 2.5))
    rows = dict(check_dataset(root).summary_rows())
    assert rows["size (min / median / max)"].endswith(" voxels")
    assert rows["spacing (min / median / max)"] == "0.8x0.8x2.5 / 0.8x0.8x2.5 / 0.8x0.8x2.5 mm"
    assert rows["class 1"].endswith("% of voxels, in 2 cases")


def test_a_tiff_resolution_has_no_stated_unit(tmp_path) -> None:
    root = tmp_path / "tiffs"
    for name in ("a", "b"):
        image = np.random.default_rng(0).integers(0, 255, (1, 16, 16)).astype(np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:8] = 1
        geometry = Geometry(spacing=(0.5, 0.5), format="tiff")
        write_image(root / "images" / f"{name}.tif", image, geometry)
        write_mask(root / "masks" / f"{name}.tif", mask, geometry)
    rows = dict(check_dataset(root).summary_rows())
    assert rows["spacing (min / median / max)"] == ("0.5x0.5 / 0.5x0.5 / 0.5x0.5 (the files "
                                                    "state no unit)")
