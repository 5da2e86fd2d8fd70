"""Predictions come out in the training masks' format when the images are in another 2D format
(DRIVE: LZW-compressed TIFF photographs, PNG masks -> PNG predictions, as evaluators expect)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.outputs import output_path
from unetkit.train.fit import fit


def _tiff_images(root: Path) -> None:
    """Replace the PNG images of ``root/images`` by LZW-compressed TIFFs (masks stay PNG)."""
    for png in sorted((root / "images").glob("*.png")):
        tifffile.imwrite(png.with_suffix(".tif"), np.asarray(Image.open(png)),
                         compression="lzw")
        png.unlink()


def test_output_path_takes_the_mask_format_only_between_2d_formats(tmp_path) -> None:
    out = tmp_path / "pred"
    assert output_path(Path("a/21.tif"), out, mask_format=".png") == out / "21.png"
    assert output_path(Path("a/21.tif"), out) == out / "21.tif"
    assert output_path(Path("a/x.png"), out, mask_format=".tif") == out / "x.tif"
    assert output_path(Path("a/x.jpg"), out, mask_format=".gif") == out / "x.png"
    assert output_path(Path("a/ct.nii.gz"), out, mask_format=".png") == out / "ct.nii.gz"
    assert output_path(Path("a/x.png"), out, mask_format=".nii.gz") == out / "x.png"


def test_tiff_photographs_with_png_masks_predict_png_masks(tmp_path, disks, tiny_config):
    root = disks(tmp_path / "data", n_cases=4)
    _tiff_images(root)
    fit(tiny_config("data.val_fraction=0.0"), root, tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["mask_format"] == ".png"
    done = CliRunner().invoke(app, ["predict", str(tmp_path / "run" / "best.pt"),
                                    str(root / "images"), "-o", str(tmp_path / "pred"), "-q"])
    assert done.exit_code == 0, done.output
    written = sorted(p.name for p in (tmp_path / "pred").iterdir() if p.is_file())
    assert written == ["c0.png", "c1.png", "c2.png", "c3.png", "predict.json"]
    mask = np.asarray(Image.open(tmp_path / "pred" / "c0.png"))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
