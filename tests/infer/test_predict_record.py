"""What ``unetkit predict`` tells: the threshold and TTA it used, and ``predict.json``, the record
of each mask's input files that lets ``unetkit evaluate`` draw the overlays on the images."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.io import read_image
from unetkit.evaluate import evaluate_folders
from unetkit.infer.calibration import store_calibration

runner = CliRunner()
CALIBRATION = {"threshold": 0.51, "score": 0.9, "beta": 1.0, "images": 16,
               "source": "training", "curve": {}}


def write_pngs(folder, names, size=(24, 28), seed=0, rgb=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        shape = (*size, 3) if rgb else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    return folder


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args), "--quiet"])


def test_predict_says_which_threshold_and_tta_it_used(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=2)
    store_calibration(ckpt, CALIBRATION)
    images = write_pngs(tmp_path / "images", ["a.png"])
    done = predict(ckpt, images, "-o", tmp_path / "o1", "--tta", "0,1")
    assert done.exit_code == 0, done.output
    assert ("decision: threshold 0.51 (calibrated: mean F1 0.9000 on 16 training images); "
            "TTA: mirroring axes 0,1 (4 forwards per image)") in done.output
    done = predict(ckpt, images, "-o", tmp_path / "o2", "--set", "infer.threshold=0.3")
    assert "decision: threshold 0.30 (set, not calibrated); TTA: none" in done.output
    three = predict(make_checkpoint("k.pt", out_channels=3), images, "-o", tmp_path / "o3")
    assert "decision: the most probable of 3 classes; TTA: none" in three.output


def test_predict_json_names_each_input_and_evaluate_draws_on_them(make_checkpoint,
                                                                  tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=2)
    store_calibration(ckpt, CALIBRATION)
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    truth = write_pngs(tmp_path / "truth", ["a.png", "b.png"], seed=1)
    for path in truth.iterdir():  # binary ground truth
        Image.fromarray((np.array(Image.open(path)) > 128).astype(np.uint8)).save(path)
    out = tmp_path / "pred"
    assert predict(ckpt, images, "-o", out).exit_code == 0
    record = json.loads((out / "predict.json").read_text())
    assert record["cases"] == {name: [str((images / name).resolve())]
                               for name in ("a.png", "b.png")}
    assert record["decision"] == {"threshold": 0.51, "tta_axes": []}
    seen = {}

    def report(out_dir, result, overlays):
        seen["overlays"] = overlays
        return out_dir / "report.html"

    result = evaluate_folders(out, truth, tmp_path / "eval", report=report)
    assert "predict.json" in result.images_note
    for item in seen["overlays"]:  # the input images, not black
        assert np.array_equal(item["image"], read_image(images / f"{item['case']}.png")[0])
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["prediction"] == {"threshold": 0.51, "tta_axes": []}
    done = runner.invoke(app, ["evaluate", str(out), str(truth), "-o", str(tmp_path / "e2")])
    assert done.exit_code == 0, done.output
    page = (tmp_path / "e2" / "report.html").read_text()
    assert "Overlays drawn on the images unetkit predict recorded in" in page


def test_a_second_batch_adds_to_the_record(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    first = write_pngs(tmp_path / "one", ["a.png"])
    second = write_pngs(tmp_path / "two", ["b.png"])
    assert predict(ckpt, first, "-o", tmp_path / "out").exit_code == 0
    assert predict(ckpt, second, "-o", tmp_path / "out").exit_code == 0
    cases = json.loads((tmp_path / "out" / "predict.json").read_text())["cases"]
    assert cases == {"a.png": [str((first / "a.png").resolve())],
                     "b.png": [str((second / "b.png").resolve())]}


def test_a_predict_json_that_is_not_ours_refuses_the_batch(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "predict.json").write_text('{"my": "notes"}')
    done = predict(ckpt, images, "-o", out)
    assert done.exit_code == 2 and "is not a record of unetkit predict" in done.output
    assert sorted(p.name for p in out.iterdir()) == ["predict.json"]  # no mask, notes kept
    assert (out / "predict.json").read_text() == '{"my": "notes"}'
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "predict.json").symlink_to(tmp_path / "elsewhere.json")
    done = predict(ckpt, images, "-o", linked)
    assert done.exit_code == 2 and "symbolic link" in done.output
    assert not (tmp_path / "elsewhere.json").exists()


def test_without_a_record_or_images_the_overlays_say_they_are_on_black(make_checkpoint,
                                                                        tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png"])
    truth = write_pngs(tmp_path / "truth", ["a.png"], seed=2)
    out = tmp_path / "pred"
    assert predict(ckpt, images, "-o", out).exit_code == 0
    (images / "a.png").unlink()  # the recorded image is gone: drawn on black, not a failure
    seen = {}
    result = evaluate_folders(out, truth, tmp_path / "e", report=lambda o, r, v: seen.update(
        overlays=v) or o / "report.html")
    assert not seen["overlays"][0]["image"].any()
    (out / "predict.json").unlink()
    result = evaluate_folders(out, truth, tmp_path / "e", force=True)
    assert result.images_note.startswith("Overlays drawn on black") and "--images" in \
        result.images_note
