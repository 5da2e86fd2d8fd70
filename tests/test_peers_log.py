"""``benchmarks/peers.py`` counts nnU-Net v2's training steps from its log, and writes the
trainer classes nnU-Net runs. nnU-Net is not installed here: the log is written in its format
(``nnUNetTrainer.print_to_log_file``: a timestamp, then each part followed by a space in the
log file, or joined by spaces on the console), the trainers are checked as Python source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402

HEADER = """
#######################################################################
Please cite the following paper when using nnU-Net:
#######################################################################

This is the configuration used by this training:
Configuration name: 3d_fullres
 {'data_identifier': 'nnUNetPlans_3d_fullres', 'batch_size': 9, 'patch_size': [40, 56, 40]}
"""


def epoch_lines(epoch: int, started: str, ended: str, loss: str, seconds: str,
                finished: bool = True) -> list[str]:
    """One epoch as nnU-Net v2 logs it (on_train_epoch_start ... on_epoch_end)."""
    lines = [f"{started}: ", f"{started}: Epoch {epoch}", f"{started}: Current learning rate: 0.01",
             "using pin_memory on device 0"]
    if finished:
        lines += [f"{ended}: train_loss {loss}", f"{ended}: val_loss -0.0213",
                  f"{ended}: Pseudo dice [np.float32(0.0), np.float32(0.0)]",
                  f"{ended}: Epoch time: {seconds} s",
                  f"{ended}: Yayy! New best EMA pseudo Dice: 0.0"]
    return lines


def nnunet_log(console: bool) -> str:
    """Two finished epochs and a third cut off inside (the process was stopped)."""
    lines = (epoch_lines(0, "2026-11-30 14:41:02.118243", "2026-11-30 14:53:47.553318",
                         "0.0812", "765.43")
             + epoch_lines(1, "2026-11-30 14:53:48.103445", "2026-11-30 15:06:30.201100",
                           "-0.1104", "762.1")
             + epoch_lines(2, "2026-11-30 15:06:30.900000", "", "", "", finished=False))
    if not console:  # the log file: every part followed by a space
        lines = [line + " " if line[:4].isdigit() else line for line in lines]
    return HEADER + "\n".join(lines) + "\n"


@pytest.mark.parametrize("console", [True, False], ids=["console", "log file"])
def test_finished_epochs_are_counted_from_timestamped_lines(console: bool) -> None:
    epochs = peers.nnunet_epochs(nnunet_log(console))
    assert epochs == [{"epoch": 0, "train_loss": 0.0812, "seconds": 765.43},
                      {"epoch": 1, "train_loss": -0.1104, "seconds": 762.1}]


def test_the_parser_that_recorded_zero_steps_would_miss_them() -> None:
    """The 30 Nov result recorded 0 steps: its parser wanted lines starting with "Epoch"."""
    log = nnunet_log(console=True)
    assert sum(1 for line in log.splitlines() if line.strip().startswith("Epoch ")
               and "time" not in line) == 0
    assert len(peers.nnunet_epochs(log)) == 2


def test_a_log_without_a_finished_epoch_counts_none() -> None:
    started_only = "\n".join(epoch_lines(0, "2026-11-30 14:41:02.1", "", "", "", False))
    assert peers.nnunet_epochs(HEADER + started_only) == []
    assert peers.nnunet_epochs("") == []


def test_the_training_log_file_is_read_before_the_console_capture(tmp_path: Path) -> None:
    fold = tmp_path / "results" / "Dataset500_Hippocampus" / "T__nnUNetPlans__3d_fullres"
    (fold / "fold_all").mkdir(parents=True)
    (fold / "fold_all" / "training_log_2026_11_30_14_40_01.txt").write_text(nnunet_log(False))
    (tmp_path / "train.log").write_text("console output cut short\n")
    assert len(peers.nnunet_epochs(peers._training_log(tmp_path))) == 2
    (fold / "fold_all" / "training_log_2026_11_30_14_40_01.txt").unlink()
    assert peers.nnunet_epochs(peers._training_log(tmp_path)) == []


def test_fixed_length_trainer_subclasses_nnunets_own_and_skips_final_validation(
        tmp_path: Path) -> None:
    name = peers.write_trainer(tmp_path, "nnUNetTrainer_5epochs", "15m")
    assert name == "nnUNetTrainer_5epochs_UnetkitNoFinalVal"
    tree = ast.parse((tmp_path / "unetkit_fixed.py").read_text())
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports] == [
        (peers.XEPOCHS, ["nnUNetTrainer_5epochs"])]
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert cls.name == name and [b.id for b in cls.bases] == ["nnUNetTrainer_5epochs"]
    assert [f.name for f in cls.body if isinstance(f, ast.FunctionDef)] == [
        "perform_actual_validation"]  # nnU-Net's schedule itself is untouched


def test_budget_trainer_gets_the_budget_in_seconds(tmp_path: Path) -> None:
    assert peers.write_trainer(tmp_path, "budget", "15m") == peers.TRAINER
    source = (tmp_path / "unetkit_budget.py").read_text()
    ast.parse(source)
    assert "budget_s = 900.0" in source
    assert f"num_iterations_per_epoch = {peers.BUDGET_ITERATIONS}" in source


def test_unknown_trainer_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--nnunet-trainer os.system"):
        peers.write_trainer(tmp_path, "os.system", "15m")
    assert list(tmp_path.iterdir()) == []
