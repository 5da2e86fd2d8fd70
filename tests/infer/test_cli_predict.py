"""``unetkit predict`` / ``export`` through the CLI: formats, geometry, failures, ONNX."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.postprocess import keep_largest_component
from unetkit.infer.predictor import Predictor

runner = CliRunner()


def write_pngs(folder, names, size=(40, 36), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / name)
    return folder


def test_png_folder_in_png_masks_out_with_stored_values(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=1, mask_values={0: 0, 1: 255})
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "out"),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    predictor = Predictor.from_checkpoint(ckpt)
    for name in ("a.png", "b.png"):
        written = np.array(Image.open(tmp_path / "out" / name))
        assert written.shape == (40, 36) and written.dtype == np.uint8
        expected = predictor.predict(images / name).labels.astype(np.uint8) * 255
        assert np.array_equal(written, expected)
        assert set(np.unique(written)) <= {0, 255}


def test_palette_overlay_and_probabilities(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=3)
    images = write_pngs(tmp_path / "images", ["x.png"], size=(24, 33))
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(ckpt), str(images / "x.png"), "-o", str(out),
                                 "--palette", "--overlay", "--save-probabilities", "--quiet",
                                 "--tta", "all", "--keep-largest"])
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "x.png")
    assert mask.mode == "P" and mask.size == (33, 24)
    assert np.array(mask).max() <= 2
    overlay = Image.open(out / "overlays" / "x.png")  # enlarged 8x, caption and legend added
    assert overlay.mode == "RGB" and overlay.size[0] == 33 * 8 + 16
    assert overlay.size[1] > 24 * 8
    with np.load(out / "probabilities" / "x.npz") as data:
        probs = data["data"]
    assert probs.shape == (3, 24, 33)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # the mask is the arg-max of the saved probabilities after --keep-largest
    assert np.array_equal(np.array(mask), keep_largest_component(probs.argmax(0)))


def test_nifti_keeps_affine_and_shape(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(spatial_dims=3, out_channels=2)
    angle = 0.3
    affine = np.array([[0.8 * np.cos(angle), -0.8 * np.sin(angle), 0, -20.5],
                       [0.8 * np.sin(angle), 0.8 * np.cos(angle), 0, 13.0],
                       [0, 0, 2.5, 7.25], [0, 0, 0, 1]])
    volume = np.random.default_rng(1).normal(0, 1, (13, 11, 6)).astype(np.float32)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "in" / "case.nii.gz")
    result = runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "in" / "case.nii.gz"),
                                 "-o", str(tmp_path / "out"), "--quiet",
                                 "--save-probabilities"])
    assert result.exit_code == 0, result.output
    written = nib.load(tmp_path / "out" / "case.nii.gz")
    assert written.shape == (13, 11, 6)
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert np.issubdtype(written.get_data_dtype(), np.integer)
    probs = nib.load(tmp_path / "out" / "probabilities" / "case.nii.gz")
    assert probs.shape == (13, 11, 6, 2)
    np.testing.assert_allclose(probs.affine, affine, atol=1e-5)


def test_unreadable_input_is_skipped_and_exit_code_nonzero(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["good1.png", "good2.png"])
    (images / "broken.png").write_bytes(b"not a png at all")
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "broken.png" in result.output
    assert (tmp_path / "o" / "good1.png").is_file() and (tmp_path / "o" / "good2.png").is_file()
    assert not (tmp_path / "o" / "broken.png").exists()


def test_bad_arguments_are_reported(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    missing = runner.invoke(app, ["predict", str(ckpt), str(tmp_path / "nope.png"), "-o", "o"])
    assert missing.exit_code == 2 and "not found" in missing.output
    bad_ckpt = runner.invoke(app, ["predict", str(tmp_path / "x.pt"), str(tmp_path), "-o", "o"])
    assert bad_ckpt.exit_code == 2 and "checkpoint" in bad_ckpt.output
    bad_tta = runner.invoke(app, ["predict", str(ckpt), str(tmp_path), "-o", "o", "--tta", "x"])
    assert bad_tta.exit_code == 2 and "--tta" in bad_tta.output


def test_export_cli_then_predict_with_onnx(make_checkpoint, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    ckpt = make_checkpoint(out_channels=1, mask_values={0: 0, 1: 255})
    result = runner.invoke(app, ["export", str(ckpt), "--format", "onnx", "-o",
                                 str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "max abs difference" in result.output
    ts = runner.invoke(app, ["export", str(ckpt), "-f", "torchscript", "-o",
                             str(tmp_path / "m.ts")])
    assert ts.exit_code == 0 and (tmp_path / "m.ts").is_file()
    images = write_pngs(tmp_path / "images", ["c.png"], size=(30, 30))
    runs = {}
    for tag, args in {"torch": [str(ckpt)], "onnx": [str(ckpt), "--onnx", str(tmp_path / "m.onnx")],
                      "onnx_only": [str(tmp_path / "m.onnx")]}.items():
        out = tmp_path / tag
        result = runner.invoke(app, ["predict", args[0], str(images), "-o", str(out), "-q",
                                     *args[1:]])
        assert result.exit_code == 0, result.output
        runs[tag] = np.array(Image.open(out / "c.png"))
    assert np.array_equal(runs["torch"], runs["onnx"])
    assert np.array_equal(runs["torch"], runs["onnx_only"])


def test_a_corrupt_onnx_file_is_one_clear_error(tmp_path) -> None:
    pytest.importorskip("onnx")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf model")
    images = write_pngs(tmp_path / "images", ["a.png"])
    result = runner.invoke(app, ["predict", str(bad), str(images), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{bad}: not a readable ONNX model" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
