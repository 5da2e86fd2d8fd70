"""``unetkit predict --roi DIR``: background and certain-background probabilities outside each
case's region of interest; a case without one fails by name, the others are written."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.files import predict_files
from unetkit.infer.predictor import Predictor

runner = CliRunner()
SHAPE = (24, 30)


def left_part(columns: int) -> np.ndarray:
    roi = np.zeros(SHAPE, bool)
    roi[:, :columns] = True
    return roi


def write_inputs(tmp_path, names):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for name in names:
        Image.fromarray(rng.integers(0, 256, SHAPE, dtype=np.uint8)).save(images / name)
    return images


def write_rois(tmp_path, rois):
    folder = tmp_path / "rois"
    folder.mkdir()
    for name, roi in rois.items():
        Image.fromarray((roi * 255).astype(np.uint8)).save(folder / name)
    return folder


def test_cli_predict_with_roi(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=2, mask_values={0: 0, 1: 255}, infer={"threshold": 0.3})
    images = write_inputs(tmp_path, ["a.png", "b.png", "c.png"])
    rois = write_rois(tmp_path, {"a.png": left_part(12), "b.png": left_part(20)})  # c: none
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(out), "--roi",
                                 str(rois), "--save-probabilities", "--quiet"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "1 of 3 input(s) failed" in output and "no region of interest for case c" in output
    assert not (out / "c.png").exists()
    predictor = Predictor.from_checkpoint(ckpt)
    for name, columns in (("a", 12), ("b", 20)):
        roi = left_part(columns)
        plain = predictor.predict(images / f"{name}.png")
        assert plain.labels[~roi].any()  # the model does predict foreground outside
        mask = np.array(Image.open(out / f"{name}.png"))
        assert np.all(mask[~roi] == 0)
        assert np.array_equal(mask[roi], plain.labels[roi].astype(np.uint8) * 255)
        with np.load(out / "probabilities" / f"{name}.npz") as data:
            probs = data["data"]
        assert probs.shape == (2, *SHAPE)
        assert np.all(probs[1][~roi] == 0) and np.all(probs[0][~roi] == 1)
        np.testing.assert_allclose(probs[:, roi], plain.probabilities[:, roi], atol=1e-6)


def test_roi_found_by_case_id_or_file_stem(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=2)
    images = write_inputs(tmp_path, ["x_0000.png", "y_0000.png"])  # cases x and y
    rois = write_rois(tmp_path, {"x.png": left_part(5), "y_0000.png": left_part(7)})
    predictor = Predictor.from_checkpoint(ckpt)
    done = predict_files(predictor, [images], tmp_path / "out", roi_dir=rois)
    assert done.failed == [] and sorted(p.name for p in done.written) == ["x.png", "y.png"]
    for name, columns in (("x", 5), ("y", 7)):
        mask = np.array(Image.open(tmp_path / "out" / f"{name}.png"))
        assert not mask[~left_part(columns)].any()


def test_roi_problems_are_one_line_each(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=2)
    images = write_inputs(tmp_path, ["a.png"])
    rois = tmp_path / "rois"
    rois.mkdir()
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(rois / "a.png")
    predictor = Predictor.from_checkpoint(ckpt)
    done = predict_files(predictor, [images], tmp_path / "out", roi_dir=rois)
    assert len(done.failed) == 1 and "rois/a.png: region of interest shape (10, 10)" in \
        done.failed[0][1]
    missing = runner.invoke(app, ["predict", str(ckpt), str(images), "-o",
                                  str(tmp_path / "o2"), "--roi", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere: not a folder" in missing.output
    assert "Traceback" not in missing.output
    into_rois = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(rois),
                                    "--roi", str(rois)])
    assert into_rois.exit_code == 2 and "nothing written" in " ".join(into_rois.output.split())
