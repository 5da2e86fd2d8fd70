"""The checkpoint schema: safe loading, format-1 upgrade, plain values, clear errors."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.config import Config, config_to_dict
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)


class _Payload:
    """Unpickling this runs ``os.system``: what a malicious ``.pt`` does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A file torch.load(weights_only=False) would execute: a dict with a code-running value."""
    config = Config.model_validate({"model": {"out_channels": 2, "base_width": 4, "depth": 2}})
    payload = {"format_version": 2, "config": config_to_dict(config), "labels": {0: "a", 1: "b"},
               "model_state": {}, "evil": _Payload(marker)}
    torch.save(payload, path, pickle_module=pickle)
    return path


def tiny_checkpoint(path: Path, **extra) -> Path:
    config = Config.model_validate({"model": {"out_channels": 2, "base_width": 4, "depth": 2}})
    model = build_model("unet", **config.model.build_options())
    return save_checkpoint({"config": config_to_dict(config), "model_state": model.state_dict(),
                            "labels": {0: "bg", 1: "fg"}, **extra}, path)


def test_a_code_running_pickle_is_refused_and_runs_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["predict", "{ckpt}", "{images}", "-o", "{out}"],
    ["export", "{ckpt}"],
    ["calibrate", "{ckpt}", "--data", "{images}"],
    ["train", "--resume", "{run}"],
])
def test_every_command_refuses_a_malicious_checkpoint(tmp_path, command) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    ckpt = malicious_checkpoint(run / "last.pt", marker)
    (tmp_path / "images").mkdir()
    args = [a.format(ckpt=ckpt, images=tmp_path / "images", out=tmp_path / "o", run=run)
            for a in command]
    # rich draws the progress bar in UTF-8; the test process's locale may have been set to C
    result = subprocess.run([sys.executable, "-m", "unetkit", *args], capture_output=True,
                            encoding="utf-8", timeout=120)
    assert result.returncode != 0
    assert not marker.exists()
    assert "refused to load" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if "error:" in ln]) == 1


def test_format_1_checkpoint_is_upgraded(tmp_path) -> None:
    config = Config.model_validate({"model": {"out_channels": 2, "base_width": 4, "depth": 2},
                                    "data": {"image_offset": [0.5, 0.0]}})
    model = build_model("unet", **config.model.build_options())
    data = config_to_dict(config)
    data["data"]["cache"] = True  # a retired field older configs still hold
    old = {"format_version": 1, "config": data, "model_state": model.state_dict(),
           "labels": {0: "bg", 1: "fg"}, "normalization": {"scheme": "zscore"},
           "epoch": 3, "step": 30, "metrics": {"val_dice": 0.5}, "best_metric": 0.5,
           "training": {"epoch": 3, "step": 30, "step_in_epoch": 0, "total_steps": 60},
           "rng": {"numpy": np.random.get_state()}, "optimizer_state": {}, "scaler_state": None}
    path = tmp_path / "old.pt"
    torch.save(old, path)  # as unetkit 0.1 wrote it (NumPy arrays in the RNG state)
    checkpoint = load_checkpoint(path)
    assert checkpoint["format_version"] == 2
    assert checkpoint["preprocessing"] == {"normalization": {"scheme": "zscore"}}
    state = TrainingState.from_checkpoint(checkpoint)
    assert (state.epoch, state.step, state.total_steps) == (3, 30, 60)
    assert state.best_metric == 0.5 and state.metrics == {"val_dice": 0.5}
    assert "epoch" not in checkpoint and "step" not in checkpoint  # stored once, in training
    assert model_from_checkpoint(checkpoint)(torch.zeros(1, 1, 8, 8)).shape == (1, 2, 8, 8)


def test_numpy_values_are_saved_as_plain_numbers(tmp_path) -> None:
    path = tiny_checkpoint(tmp_path / "c.pt", training={"best_metric": np.float64(0.7),
                                                        "metrics": {"dice": np.float32(0.5)}})
    loaded = load_checkpoint(path)  # weights_only loading would refuse NumPy scalars
    assert type(loaded["training"]["best_metric"]) is float
    assert loaded["training"]["metrics"]["dice"] == 0.5


def test_unreadable_and_foreign_files_name_the_file(tmp_path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a unetkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_config_give_one_clear_error(tmp_path) -> None:
    path = tiny_checkpoint(tmp_path / "c.pt")
    checkpoint = load_checkpoint(path)
    checkpoint["config"]["model"]["base_width"] = 8
    with pytest.raises(CheckpointError, match="do not fit the network of its config"):
        model_from_checkpoint(checkpoint, "c.pt")
