"""Validation is prediction: the Dice a run logs for its best epoch is the Dice that
``unetkit predict best.pt`` + ``unetkit evaluate`` give on the same validation images, with the
whole-image path and with tiles forced by a small ``infer.memory_budget_mb``, in fp32 and in bf16
(both paths run the checkpoint's ``infer.precision``; bf16 is emulated on CPUs without it)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.predictor import Predictor
from unetkit.infer.strategy import Strategy
from unetkit.train.fit import fit

runner = CliRunner()
VAL = ["c3", "c4"]


@pytest.mark.slow
@pytest.mark.parametrize("budget", [2048.0, 0.2])
def test_validation_dice_is_predict_plus_evaluate_dice(tmp_path, disks, tiny_config, budget,
                                                       precision) -> None:
    data = disks(tmp_path / "data", n_cases=5, size=44, seed=3)
    split = tmp_path / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["c0", "c1", "c2"], "val": VAL}))
    config = tiny_config(f"data.split_file={split}", "model.base_width=8", "train.epochs=3",
                         "train.steps_per_epoch=6", f"infer.memory_budget_mb={budget}",
                         *precision.overrides)
    result = fit(config, data, tmp_path / "run")
    best = tmp_path / "run" / "best.pt"
    assert result.best_metric is not None and 0.0 < result.best_metric < 1.0

    # the planned windows: one forward at the default budget, tiles at the small one, in
    # the run's precision
    predictor = Predictor.from_checkpoint(best)
    assert predictor.plan.name == precision.name
    plan = Strategy(predictor.config, predictor.plan, 2).window_plan((44, 44))
    assert plan.whole == (budget > 1)

    for folder in ("images", "masks"):
        (tmp_path / "val" / folder).mkdir(parents=True)
        for case in VAL:
            shutil.copy(data / folder / f"{case}.png", tmp_path / "val" / folder / f"{case}.png")
    out = tmp_path / "pred"
    done = runner.invoke(app, ["predict", str(best), str(tmp_path / "val" / "images"), "-o",
                               str(out), "-q"])
    assert done.exit_code == 0, done.output
    evaluated = runner.invoke(app, ["evaluate", str(out), str(tmp_path / "val" / "masks")])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    assert summary["per_class"]["1"]["dice"]["mean"] == pytest.approx(result.best_metric,
                                                                      abs=1e-9)
