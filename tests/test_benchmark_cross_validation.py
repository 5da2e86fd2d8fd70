"""benchmarks/cross_validation.py end to end on a tiny generated data set and a tiny budget:
the cross-validation Dice, the fold ensemble's and the single model's held-out Dice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import unetkit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_cross_validation_benchmark_writes_both_held_out_scores(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_conftest",
                                                  ROOT / "tests" / "train" / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    data = helpers.write_disks(tmp_path / "data", n_cases=8, size=40, seed=2)
    result = tmp_path / "cv.json"
    source = str(Path(unetkit.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH",
                                                                               "")])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cross_validation.py"), str(data), "--time",
         "20s", "--folds", "2", "--holdout", "every:4:3", "--work", str(tmp_path / "work"),
         "--results", str(result), "--set", "model.base_width=8",
         "--set", "train.channels_last=false"],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(result.read_text())
    assert record["test_cases"] == 2 and record["folds"] == 2
    assert record["cross_validation"]["cases"] == 6
    for side in ("ensemble", "single"):
        assert 0.0 <= record[side]["mean_dice"] <= 1.0
        assert sorted(record[side]["per_case"]) == ["c3", "c7"]
    assert record["winner"] in ("ensemble", "single")
    assert "winner on the 2 held-out cases" in done.stdout
