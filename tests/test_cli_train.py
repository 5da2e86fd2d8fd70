"""CliRunner tests of `unetkit train` with a tiny config."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.runtime.checkpoint import load_checkpoint

runner = CliRunner()
TINY = ["--set", "model.base_width=4", "--set", "model.depth=2", "--set", "train.steps_per_epoch=2",
        "--set", "data.augment.enabled=false", "--patch-size", "32", "--batch-size", "2",
        "--precision", "fp32", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from unetkit.data.synthetic import write_cells_dataset

    return write_cells_dataset(tmp_path_factory.mktemp("cli") / "cells", 4, (32, 32), seed=0)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_writes_a_run_and_takes_typed_options(tmp_path, cells):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "2",
                                 "--lr", "0.02", "--seed", "3", "--val-fraction", "0.25", *TINY])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")  # rich wraps long paths
    assert "done (completed): 2 epochs, 4 steps" in text
    assert f"run folder: {out}" in text
    assert "INFO" not in text  # -q: warnings only on the console
    checkpoint = load_checkpoint(out / "best.pt")
    config = checkpoint["config"]
    assert config["train"]["lr"] == 0.02 and config["train"]["seed"] == 3
    assert config["data"]["patch_size"] == [32, 32] and config["data"]["batch_size"] == 2
    assert checkpoint["labels"] == {0: "background", 1: "membrane"}  # from dataset.json
    assert (out / "config.yaml").is_file() and (out / "metrics.csv").is_file()


def test_train_resume_continues_to_more_epochs(tmp_path, cells):
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                *TINY])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2", "-q"])
    assert again.exit_code == 0, again.output
    assert "2 epochs, 4 steps" in again.output
    assert load_checkpoint(out / "last.pt")["training"]["epoch"] == 2


def test_train_kfold_option(tmp_path, cells):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                 "--fold", "1", "--folds", "2", *TINY])
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(out / "last.pt")["config"]["data"]
    assert saved["fold"] == 1 and saved["folds"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.optimizer=adam"], "train.optimizer: got 'adam'"),
    (["--lr", "-1"], "train.lr"),
    (["--precision", "fp8"], "--precision (train.precision): got 'fp8'"),
    (["--patch-size", "12,a"], "--patch-size '12,a'"),
    (["--set", "train.nope=1"], "unknown field 'train.nope'"),
    (["--time", "soon"], "cannot read duration 'soon'"),
    (["--time", "0"], "time budget '0' is not positive"),
    (["--time", "0s"], "time budget '0s' is not positive"),
    (["--time", "-5m"], "cannot read duration '-5m'"),
    (["--set", "train.lr=[1"], "--set 'train.lr=[1': not a valid value"),
])
def test_invalid_config_exits_2_with_message(tmp_path, cells, args, message):
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(tmp_path / "r"),
                                 *args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_missing_data_and_doctor_errors(tmp_path, cells):
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--data DIR is needed" in result.output
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    for name in ("cell_000.png", "cell_001.png"):
        (bad / "images" / name).write_bytes((cells / "images" / name).read_bytes())
    (bad / "masks" / "cell_000.png").write_bytes((cells / "masks" / "cell_000.png").read_bytes())
    result = runner.invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path / "r"), *TINY])
    assert result.exit_code == 1
    text = result.output.replace("\n", "")  # rich wraps long paths
    assert "data doctor found 1 error(s)" in text and "cell_001.png: image without" in text


def test_train_with_auto_threshold_reports_it_and_predict_uses_it(tmp_path, cells):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                 "--val-fraction", "0.25", "--set", "infer.threshold=auto", *TINY])
    assert result.exit_code == 0, result.output
    calibration = load_checkpoint(out / "best.pt")["calibration"]
    assert calibration["source"] == "validation" and calibration["images"] == 1
    assert f"decision threshold {calibration['threshold']:.2f} (calibrated" in result.output
    predicted = runner.invoke(app, ["predict", str(out / "best.pt"), str(cells / "images"),
                                    "-o", str(tmp_path / "pred"), "--device", "cpu", "-q"])
    assert predicted.exit_code == 0, predicted.output


def test_calibrate_command_stores_a_threshold(tmp_path, cells):
    out = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                  "--set", "infer.threshold=null", *TINY])  # not calibrated
    assert trained.exit_code == 0, trained.output
    assert load_checkpoint(out / "best.pt").get("calibration") is None
    result = runner.invoke(app, ["calibrate", str(out / "best.pt"), "--data", str(cells),
                                 "--beta", "0.5", "--max-images", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out / "best.pt")
    record = checkpoint["calibration"]
    assert record["beta"] == 0.5 and record["images"] == 3
    assert checkpoint["config"]["infer"]["threshold"] == record["threshold"]
    assert f"threshold {record['threshold']:.2f}: mean F0.5" in result.output
    missing = runner.invoke(app, ["calibrate", str(out / "best.pt"), "--data",
                                  str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "error" in missing.output


def flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long paths


def test_a_python_tag_in_an_override_runs_nothing(tmp_path, cells):
    marker = tmp_path / "pwned"
    override = f'train.lr=!!python/object/apply:os.system ["touch {marker}"]'
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(tmp_path / "r"),
                                 "--set", override])
    assert result.exit_code == 2
    assert "not a valid value (could not determine a constructor" in flat(result.output)
    assert "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_resume_refuses_a_zero_time_budget(tmp_path, cells):
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                *TINY])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(out), "--time", "0", "-q"])
    assert again.exit_code == 2
    assert "time budget '0' is not positive" in flat(again.output)


@pytest.mark.parametrize("name", ["best.pt", "metrics.csv", "config.yaml"])
def test_a_folder_holding_a_run_without_last_pt_is_not_overwritten(tmp_path, cells, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"earlier work")
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), *TINY])
    assert result.exit_code == 1
    assert f"--out {out}: already holds a run ({name}); choose another folder" in \
        flat(result.output)
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_bytes() == b"earlier work"


def test_an_unwritable_out_fails_before_the_data_is_loaded(tmp_path, cells, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr("unetkit.train.fit.prepare_data", no_loading)
    (tmp_path / "file").write_text("a file where a folder should be")
    result = runner.invoke(app, ["train", "--data", str(cells), "--out",
                                 str(tmp_path / "file" / "run"), *TINY])
    assert result.exit_code == 1
    assert f"--out {tmp_path / 'file' / 'run'}: cannot write the run there" in flat(result.output)
    assert "Traceback" not in result.output


def test_a_read_only_out_fails_before_the_data_is_loaded(tmp_path, cells, monkeypatch,
                                                         read_only):
    monkeypatch.setattr("unetkit.train.fit.prepare_data", lambda *a, **k: 1 / 0)
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)  # root ignores the mode: the fixture refuses what the kernel would
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(folder), *TINY])
    assert result.exit_code == 1
    assert "cannot write the run there (Permission denied)" in flat(result.output)


def test_a_failed_start_leaves_no_empty_run_folder(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere"), "--out",
                                 str(tmp_path / "run"), *TINY])
    assert result.exit_code == 1 and "not a folder" in result.output
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_says_no_checkpoint_exists(tmp_path, cells):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "3",
                                 "--lr", "1e30", *TINY])
    assert result.exit_code == 1
    text = flat(result.output)
    assert "training loss is nan at step 1; lower train.lr (no checkpoint was written yet)" in text
    assert "Traceback" not in result.output and not (out / "last.pt").exists()


def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _disk_full_as_torch_reports_it(*args, **kwargs):
    try:
        _disk_full()
    except OSError:  # what torch.save's zip writer raises, the OSError as its context
        message = "[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662"
        raise RuntimeError(message)  # noqa: B904


@pytest.mark.parametrize("save", [_disk_full, _disk_full_as_torch_reports_it])
def test_disk_full_stops_with_one_line_and_keeps_last_pt(tmp_path, cells, monkeypatch, save):
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                *TINY])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.glob("*.pt")}
    monkeypatch.setattr("unetkit.runtime.checkpoint.torch.save", save)
    result = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2", "-q"])
    assert result.exit_code == 1
    text = flat(result.output)
    assert (f"error: {out / 'last.pt'}: checkpoint not saved: No space left on device (the "
            "previous file there is unchanged)") in text
    assert text.count("No space left") == 1 and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in out.glob("*.pt")} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
