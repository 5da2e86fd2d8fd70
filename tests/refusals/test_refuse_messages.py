"""Issue 30, "messages that do not name the problem": every option error names the option and
its value, a folder mixing 2-D and 3-D cases names the cases, and input files whose names look
like options or hidden files are never dropped in silence."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from refusal_data import disks, runner, write_pngs

from unetkit.cli import app


@pytest.mark.parametrize("command", ["train", "plan", "demo"])
def test_a_bad_duration_names_the_time_option(tmp_path, refused, command):
    root = disks(tmp_path / "data")
    args = {"train": ["train", "--data", root, "-o", tmp_path / "run"],
            "plan": ["plan", root], "demo": ["demo", "-o", tmp_path / "run"]}[command]
    line = refused([*args, "--time", "5 minutes"], "--time", "'5 minutes'", code=2)
    assert "'90s'" in line  # and says what to write instead
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--lr", "-1", "train.lr"), ("--epochs", "0", "train.epochs"),
    ("--val-fraction", "1.5", "data.val_fraction"), ("--batch-size", "0", "data.batch_size"),
])
def test_train_option_errors_name_the_option(tmp_path, refused, option, value, field):
    root = disks(tmp_path / "data")
    refused(["train", "--data", root, "-o", tmp_path / "run", option, value],
            f"{option} ({field}): got {value}", code=2)


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--overlap", "1.5", "infer.overlap"), ("--batch-size", "0", "infer.batch_size"),
    ("--min-size", "-3", "infer.postprocess.min_size"),
])
def test_predict_option_errors_name_the_option(make_checkpoint, tmp_path, refused, option,
                                               value, field):
    ckpt = make_checkpoint(out_channels=1)
    images = write_pngs(tmp_path / "images", ["a.png"])
    refused(["predict", ckpt, images, "-o", tmp_path / "out", option, value],
            f"{option} ({field}): got {value}", code=2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["a,b", "1,-2", "0.5,nan", ""])
def test_evaluate_spacing_errors_name_the_option(tmp_path, refused, value):
    root = disks(tmp_path / "data")
    refused(["evaluate", root / "masks", root / "masks", "-o", tmp_path / "ev", "--spacing",
             value or ","], "--spacing", "positive numbers", code=2)
    assert not (tmp_path / "ev").exists()


def test_evaluate_tau_must_not_be_negative(tmp_path, refused):
    root = disks(tmp_path / "data")
    refused(["evaluate", root / "masks", root / "masks", "-o", tmp_path / "ev", "--tau", "-1"],
            "--tau -1", code=2)


def _mixed(root):
    """Two 2-D PNG cases and one 3-D ``.npy`` case."""
    disks(root, n=2)
    rng = np.random.default_rng(0)
    np.save(root / "images" / "v.npy", rng.normal(size=(6, 24, 24)).astype(np.float32))
    np.save(root / "masks" / "v.npy", (rng.random((6, 24, 24)) > 0.5).astype(np.uint8))
    return root


def test_check_names_the_cases_that_mix_2d_and_3d(tmp_path, refused):
    root = _mixed(tmp_path / "data")
    line = refused(["check", root], "mix 2-D and 3-D", code=1)
    assert "2-D: 2 case(s) (images/c0.png, images/c1.png)" in line
    assert "3-D: 1 case(s) (images/v.npy)" in line


@pytest.mark.parametrize("planned", [True, False])
def test_training_names_a_case_of_other_dimensions(tmp_path, refused, planned):
    root = _mixed(tmp_path / "data")
    args = ["train", "--data", root, "-o", tmp_path / "run", "--epochs", "1", "-q"]
    if not planned:
        config = tmp_path / "c.yaml"
        config.write_text("data: {patch_size: [16, 16], batch_size: 1}\n")
        args += ["--config", config]
    refused(args, "v.npy", "3-D", listed=not planned)
    assert not (tmp_path / "run").exists()


def test_an_input_named_like_an_option_is_not_swallowed(make_checkpoint, tmp_path, refused,
                                                        monkeypatch):
    ckpt = make_checkpoint(out_channels=1)
    write_pngs(tmp_path, ["-o.png", "a.png"])
    monkeypatch.chdir(tmp_path)
    # "-o.png" parses as "--out .png": the earlier --out would silently be replaced
    refused(["predict", ckpt, "a.png", "-o", "out", "-o.png"], "--out / -o given 2 times", "--",
            code=2)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".png").exists()
    result = runner.invoke(app, ["predict", str(ckpt), "-o", "out", "-q", "--", "a.png",
                                 "-o.png"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["-o.png", "a.png",
                                                                    "predict.json"]


def test_hidden_files_in_an_input_folder_are_reported_and_can_be_named(make_checkpoint,
                                                                       tmp_path):
    ckpt = make_checkpoint(out_channels=1)
    images = write_pngs(tmp_path / "images", ["..png", "-o.png", "a.png"])
    result = runner.invoke(app, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "out"),
                                 "-q"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "skipped 1 file(s) whose names start with '.'" in flat and "..png" in flat
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["-o.png", "a.png",
                                                                    "predict.json"]
    result = runner.invoke(app, ["predict", str(ckpt), str(images / "..png"), "-o",
                                 str(tmp_path / "out2"), "-q", "--palette"])
    assert result.exit_code == 0, result.output
    written = Image.open(tmp_path / "out2" / "..png")
    assert written.format == "PNG" and written.size == (20, 24)


def test_check_says_why_a_hidden_image_is_ignored(tmp_path):
    root = disks(tmp_path / "data", n=2)
    write_pngs(root / "images", ["..png"])
    result = runner.invoke(app, ["check", str(root)])
    flat = " ".join(result.output.split())
    assert f"{root / 'images' / '..png'}: its name starts with '.' (a hidden file); ignored" \
        in flat
