"""What the console and the logs say: only computed numbers (no ``nan``, no ``0/?`` before the
first step), unwrapped lines when the output is not a terminal, and ``--resume RUN --time``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.runtime.checkpoint import load_checkpoint

runner = CliRunner()
TINY = ["--set", "model.base_width=4", "--set", "model.depth=2", "--set", "train.steps_per_epoch=2",
        "--set", "data.augment.enabled=false", "--patch-size", "32", "--batch-size", "2",
        "--precision", "fp32", "--device", "cpu"]
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    from unetkit.data.synthetic import write_cells_dataset

    return write_cells_dataset(tmp_path_factory.mktemp("out") / "cells", 4, (32, 32), seed=0)


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> str:
    """A config file: runs from it skip the planner (the first test plans)."""
    from unetkit.config import Config, save_config

    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    save_config(Config(), path)
    return str(path)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_without_validation_logs_no_nan(tmp_path, cells):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "2",
                                 "--val-fraction", "0", *TINY])
    assert result.exit_code == 0, result.output
    log = (out / "train.log").read_text()
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log
    for text in (result.output, log):
        assert not NAN.search(text), text
    assert "no validation cases" in result.output
    assert "epoch 0/" not in result.output and "loss 0.0000" not in result.output


def test_epochs_without_validation_log_no_dice(tmp_path, cells, tiny_yaml):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "2",
                                 "--val-fraction", "0.25", "--set", "train.val_every=2",
                                 "--config", tiny_yaml, *TINY])
    assert result.exit_code == 0, result.output
    log = (out / "train.log").read_text()
    first = next(line for line in log.splitlines() if "epoch 1/2" in line)
    assert "Dice" not in first and not NAN.search(log)
    assert "val Dice" in next(line for line in log.splitlines() if "epoch 2/2" in line)


def test_progress_shows_nothing_before_the_first_step_and_no_made_up_totals(capsys):
    from unetkit.cli.train_progress import TrainProgress

    progress = TrainProgress()
    progress.finish()  # a run that failed before its first step
    assert capsys.readouterr().err == ""
    progress = TrainProgress()
    step = {"step": 1, "total_steps": None, "epoch": 0, "epochs": None, "loss": 0.5, "lr": 1e-3,
            "dice": None, "eta_s": 12.0, "steps_left": None}
    progress(step)  # a time budget not yet planned: totals unknown
    progress.finish()
    err = capsys.readouterr().err
    assert "epoch 1/?" in err and "loss 0.5000" in err and "Dice -" in err
    assert not NAN.search(err) and "None" not in err


def test_a_long_path_stays_on_one_line_when_piped(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 160:
        deep = deep / "a_rather_long_folder_name"
    missing = deep / "missing_checkpoint.pt"
    assert len(str(missing)) > 150
    done = subprocess.run([sys.executable, "-m", "unetkit", "predict", str(missing),
                           str(tmp_path), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert str(missing) in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_resume_with_time_gives_an_interrupted_run_that_much_more_time(tmp_path, cells):
    from unetkit.config import Config, apply_values
    from unetkit.train.fit import fit

    out = tmp_path / "run"
    config = apply_values(Config(), {
        "model.base_width": 4, "model.depth": 2, "data.patch_size": [32, 32],
        "data.batch_size": 2, "data.val_fraction": 0.0, "data.augment.enabled": False,
        "train.steps_per_epoch": 2, "train.epochs": 3, "train.precision": "fp32",
        "train.device": "cpu"})

    def interrupt(info):
        if info["step"] == 3:  # in the middle of the second epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, cells, out, on_step=interrupt)
    spent = load_checkpoint(out / "last.pt")["training"]["elapsed_s"]
    result = runner.invoke(app, ["train", "--resume", str(out), "--time", "3s", "-q"])
    assert result.exit_code == 0, result.output
    assert "done (" in result.output and "warning" not in result.output.lower()
    last = load_checkpoint(out / "last.pt")
    budget = float(last["config"]["train"]["time_budget"].rstrip("s"))
    assert budget == pytest.approx(spent + 3.0, abs=0.06)  # counted from now, not from the start
    assert last["training"]["step"] > 3  # it trained on
    assert last["training"]["elapsed_s"] > spent


def test_resuming_a_finished_run_says_there_is_nothing_to_continue(tmp_path, cells, tiny_yaml):
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "--data", str(cells), "--out", str(out), "--epochs", "1",
                                "--val-fraction", "0", "--config", tiny_yaml, *TINY, "-q"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(out), "--time", "2s", "-q"])
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "had finished its plan (epoch 1 of 1): nothing to continue" in text



def test_the_demo_says_nothing_it_did_not_compute(tmp_path, monkeypatch):
    """The demo plans its epochs from a time budget (its config says 1000) and validates every
    second epoch: its first epoch line used to read ``epoch 1/1000: ..., val Dice nan``."""
    import functools

    import unetkit.demo

    small = functools.partial(unetkit.demo.run_demo, n_train=4, n_test=1, size=64)
    monkeypatch.setattr(unetkit.demo, "run_demo", small)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--time", "3s"])
    assert result.exit_code == 0, result.output
    log = (tmp_path / "demo" / "run" / "train.log").read_text()
    first = next(line for line in log.splitlines() if "epoch 1/" in line)
    assert "epoch 1/1000" not in first  # the config's epochs before the budget planned any
    assert "Dice" not in first or re.search(r"val Dice \d\.\d{4}", first)
    for text in (result.output, log):
        assert not NAN.search(text), text
    assert "epoch 0/" not in result.output and "loss 0.0000" not in result.output
