"""What a run leaves and says: a lean ``best.pt`` that every reader still loads, resume only
from ``last.pt``, ``progress.png`` without validation, and epoch counts shown as estimates."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import Config
from unetkit.runtime.checkpoint import CheckpointError, TrainingState, load_checkpoint
from unetkit.train.budget import TimeBudget
from unetkit.train.curves import no_validation_reason, training_figure
from unetkit.train.fit import fit

runner = CliRunner()


def test_best_pt_holds_the_model_only_and_every_reader_loads_it(tmp_path, disks_dir,
                                                                tiny_config) -> None:
    from unetkit.export import export_checkpoint
    from unetkit.infer.calibration import calibrate_checkpoint
    from unetkit.infer.predictor import Predictor

    result = fit(tiny_config("infer.threshold=auto"), disks_dir, tmp_path / "run")
    run = tmp_path / "run"
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    for key in ("optimizer_state", "scaler_state", "rng"):
        assert key not in best and key in last
    assert set(best) >= {"config", "model_state", "labels", "mask_values", "preprocessing",
                         "calibration", "training"}
    assert best["training"]["epoch"] == result.best_epoch  # which epoch it is
    assert best["config"]["infer"]["threshold"] == best["calibration"]["threshold"]
    # AdamW keeps two moments per weight: the lean file is about a third of last.pt
    assert (run / "best.pt").stat().st_size < 0.5 * (run / "last.pt").stat().st_size
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32)).astype(np.float32)
    labels = Predictor.from_checkpoint(run / "best.pt", device="cpu").predict(image).labels
    assert labels.shape == (32, 32)
    exported = export_checkpoint(run / "best.pt", tmp_path / "best.ts", "torchscript")
    assert max(exported.max_abs_diff.values()) < 1e-4
    calibrate_checkpoint(run / "best.pt", disks_dir, device="cpu")
    again = load_checkpoint(run / "best.pt")
    assert "optimizer_state" not in again and again["calibration"]["source"] == str(disks_dir)


def test_resume_from_best_pt_is_refused_in_one_line(tmp_path, disks_dir, tiny_config) -> None:
    fit(tiny_config("train.epochs=1"), disks_dir, tmp_path / "run")
    with pytest.raises(CheckpointError, match="resume from the run folder or its last.pt"):
        fit(None, None, resume=tmp_path / "run" / "best.pt")
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run" / "best.pt"),
                                 "--epochs", "2"])
    assert result.exit_code == 1
    assert "a model for prediction" in result.output and "Traceback" not in result.output


def rows(validated: bool) -> list[dict]:
    nan = math.nan
    return [{"epoch": e, "step": 4 * e, "train_loss": 1.0 / e, "lr": 0.01 / e, "seconds": 2.0,
             "val_loss": 0.9 / e if validated else nan, "val_dice": 0.5 + e / 10 if validated
             else nan, "dice_membrane": 0.5 + e / 10 if validated else nan} for e in (1, 2, 3)]


def test_progress_png_without_validation_draws_what_exists_and_says_why() -> None:
    import matplotlib.pyplot as plt

    note = no_validation_reason(Config().data.model_copy(update={"val_fraction": 0.0}), 30)
    assert note == ("no validation (data.val_fraction is 0: all 30 cases train); best.pt "
                    "holds the last epoch's weights")
    fig = training_figure(rows(validated=False), note)
    try:
        top = fig.axes[0]
        assert len(fig.axes) == 3  # no empty Dice axis beside the loss
        assert [t.get_text() for t in top.get_legend().get_texts()] == ["train loss"]
        assert top.get_title() == note
    finally:
        plt.close(fig)
    fig = training_figure(rows(validated=True), note)
    try:
        assert len(fig.axes) == 4  # the Dice axis, now that there is a Dice
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert texts == ["train loss", "val loss", "dice membrane", "val Dice (mean fg)"]
        assert fig.axes[0].get_title() == ""
    finally:
        plt.close(fig)


def test_no_validation_reason_names_the_cause() -> None:
    data = Config().data
    split = data.model_copy(update={"split_file": "splits.json"})
    assert "the split file splits.json names no validation case" in no_validation_reason(
        split, 5)
    assert "1 case(s): none to spare" in no_validation_reason(data, 1)


def test_a_run_without_validation_writes_the_reason_in_its_log(tmp_path, disks_dir,
                                                               tiny_config) -> None:
    fit(tiny_config("data.val_fraction=0", "train.epochs=1"), disks_dir, tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "no validation (data.val_fraction is 0: all 4 cases train)" in log
    assert (tmp_path / "run" / "progress.png").is_file()


def budget_run(history_plans: list[int | None], planned: int, epoch: int, stop: bool = False):
    """The parts of a ``Run`` that ``_log_epoch`` reads, under a 10-minute budget."""
    budget = TimeBudget(600.0, steps_per_epoch=10)
    budget.step_s = 0.212
    state = TrainingState(epoch=epoch, planned_epochs=planned, planned=planned is not None,
                          lr=1e-3)
    history = [{"planned_epochs": p} for p in history_plans] + [{}]
    return SimpleNamespace(state=state, budget=budget, history=history, budget_stop=stop)


def test_epoch_lines_show_a_time_budget_count_as_an_estimate(caplog) -> None:
    from unetkit.train.loop import _log_epoch

    row = {"val_dice": math.nan}
    with caplog.at_level(logging.INFO, logger="unetkit.train.loop"):
        _log_epoch(budget_run([None], 74, 2), 0.5, dict(row), 3.0)   # the first plan
        _log_epoch(budget_run([74], 65, 3), 0.5, dict(row), 3.0)     # re-estimated
        _log_epoch(budget_run([65], 65, 4), 0.5, dict(row), 3.0)     # unchanged
        _log_epoch(budget_run([62], 68, 68), 0.5, dict(row), 3.0)    # the last epoch
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("epoch 2/~74: ")
    assert "(planned: ~74 epochs fit the 10m00s budget at the 0.212 s/step" in lines[0]
    assert lines[1].startswith("epoch 3/~65: ") and "(re-planned from ~74: ~65 epochs" in lines[1]
    assert lines[2].startswith("epoch 4/~65: ") and "planned" not in lines[2]
    assert lines[3].startswith("epoch 68/68: ") and "planned" not in lines[3]


def test_the_progress_bar_counts_time_under_a_budget_and_steps_otherwise() -> None:
    from unetkit.cli.train_progress import bar_fields

    step = {"step": 40, "total_steps": 620, "epoch": 5, "epochs": 62, "loss": 0.5, "dice": 0.81,
            "validates": True, "estimated": True, "budget_s": 600.0, "elapsed_s": 72.0}
    fields = bar_fields(step)
    assert fields["epoch"] == "6/~62" and fields["count"] == "1m12s of 10m00s"
    assert (fields["completed"], fields["total"]) == (72.0, 600.0)  # the budget never moves
    assert fields["dice"] == "best Dice 0.8100"
    fixed = {**step, "estimated": False, "budget_s": None, "elapsed_s": None, "epochs": 10,
             "total_steps": 100, "validates": False, "dice": None}
    fields = bar_fields(fixed)
    assert fields["epoch"] == "6/10" and fields["count"] == "step 40/100"
    assert (fields["completed"], fields["total"]) == (40, 100)
    assert fields["dice"] == "no validation cases"

