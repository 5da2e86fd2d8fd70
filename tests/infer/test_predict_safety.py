"""``unetkit predict`` never modifies an input, never follows a symlink, and reports bad images.

Every refusal happens before anything is predicted or written: the tests compare the SHA-256
and modification time of every file under the test folder before and after.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.files import OutputPathError, predict_files
from unetkit.infer.predictor import Predictor

runner = CliRunner()


def write_pngs(folder, names, size=(24, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / name)
    return folder


def snapshot(root):
    """``{path: (sha256, mtime_ns)}`` of every file (symlinks not followed) under ``root``."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest() if not p.is_symlink() else
                os.readlink(p), p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def flat(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("where", ["same", "inside", "file_folder"])
def test_output_in_an_input_folder_is_refused_and_nothing_changes(make_checkpoint, tmp_path,
                                                                   where) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    inputs = {"same": [str(images)], "inside": [str(images)],
              "file_folder": [str(images / "a.png")]}[where]
    out = {"same": images, "inside": images / "pred", "file_folder": images}[where]
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["predict", str(ckpt), *inputs, "-o", str(out), "-q"])
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "input" in text and str(images) in text and "nothing written" in text
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before
    assert not (images / "pred").exists()


def test_a_file_input_may_write_into_a_subfolder_of_its_folder(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png"])
    before = snapshot(images)
    result = runner.invoke(app, ["predict", str(ckpt), str(images / "a.png"), "-o",
                                 str(images / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert (images / "out" / "a.png").is_file()
    assert {p: v for p, v in snapshot(images).items() if "out" not in p.parts} == before


@pytest.mark.parametrize("link", ["mask", "overlay_folder"])
def test_a_symlink_at_an_output_path_is_refused_and_not_followed(make_checkpoint, tmp_path,
                                                                 link) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a.png").write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    if link == "mask":
        (out / "a.png").symlink_to(precious / "a.png")
        named = out / "a.png"
    else:
        (out / "overlays").symlink_to(precious, target_is_directory=True)
        named = out / "overlays"
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(out), "--overlay",
                                 "-q"])
    assert result.exit_code == 2, result.output
    assert f"{named}: is a symbolic link" in flat(result.output)
    assert snapshot(tmp_path) == before  # the whole batch refused: b.png not written either
    assert (precious / "a.png").read_bytes() == b"keep me"


def test_an_output_on_an_input_or_on_another_output_is_refused(make_checkpoint, tmp_path) -> None:
    predictor = Predictor.from_checkpoint(make_checkpoint())
    out = tmp_path / "out"
    (out / "probabilities").mkdir(parents=True)
    np.savez(out / "probabilities" / "x.npz", data=np.zeros((1, 16, 16), np.float32))
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match="would replace the input"):
        predict_files(predictor, [out / "probabilities" / "x.npz"], out, save_probabilities=True)
    assert snapshot(tmp_path) == before
    images = write_pngs(tmp_path / "images", ["c.png"])
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(images / "c.jpg")  # both give c.png
    before = snapshot(tmp_path)
    with pytest.raises(OutputPathError, match="would replace the output for"):
        predict_files(predictor, [images], tmp_path / "pred")
    assert snapshot(tmp_path) == before and not (tmp_path / "pred").exists()


def test_non_finite_images_fail_by_name_and_write_no_mask(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "all_nan.npy", np.full((16, 16), np.nan, np.float32))
    partly = np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)
    partly[3, 4] = np.inf
    np.save(folder / "partly.npy", partly)
    np.save(folder / "good.npy", np.random.default_rng(1).normal(size=(16, 16)))
    result = runner.invoke(app, ["predict", str(ckpt), str(folder), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    text = flat(result.output)
    assert f"{folder / 'all_nan.npy'}: image has 256 non-finite" in text
    assert f"{folder / 'partly.npy'}: image has 1 non-finite" in text
    assert "2 of 3 input(s) failed" in text and "Traceback" not in result.output
    assert (tmp_path / "o" / "good.npy").is_file()
    assert not (tmp_path / "o" / "all_nan.npy").exists()
    assert not (tmp_path / "o" / "partly.npy").exists()
    with pytest.raises(ValueError, match="scan.nii: image has 256 non-finite"):
        Predictor.from_checkpoint(ckpt).predict(np.full((1, 16, 16), np.nan), source="scan.nii")
