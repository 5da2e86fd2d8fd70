"""The plan of a cross-validation: made once, for one fold's share of the budget, with the
choices cross-validation adds printed with their reasons; the config keeps the whole budget."""

from __future__ import annotations

import pytest

from unetkit.data.synthetic import write_cells_dataset
from unetkit.plan.candidates import affordable_steps
from unetkit.plan.cross_validation import cross_validation_config
from unetkit.train.cross_validation import plan_share_s


def test_one_plan_for_one_folds_share_of_the_budget(tmp_path, fake_steps) -> None:
    data = write_cells_dataset(tmp_path / "cells", 5, (64, 64), seed=0)
    timed = fake_steps(lambda config: 0.01 * config.model.base_width)
    config, plan = cross_validation_config(data, None, {"train.time_budget": "10m",
                                                        "train.device": "cpu"}, [], 5)
    share = plan_share_s(600.0, 5)
    chosen = next(c for c in plan.candidates if c.chosen)
    # the candidates were counted in the share's steps, not the whole budget's
    assert chosen.steps == affordable_steps(chosen.step_s, share)
    assert len(timed) >= 1
    assert config.train.time_budget == "10m" and plan.config is config
    assert config.data.folds == 5 and config.data.fold is None
    assert config.data.val_fraction == pytest.approx(0.2)
    assert config.infer.postprocess.keep_largest == "auto"
    reasons = {d.field: d.reason for d in plan.decisions}
    assert f"planned for {share:.0f} s" in reasons["train.time_budget"]
    assert "10m / 5" in reasons["train.time_budget"]
    assert "pooled out-of-fold" in reasons["infer.postprocess.keep_largest"]
    assert sum(d.field == "data.val_fraction" for d in plan.decisions) == 1
    assert "each fold is planned" in plan.yaml_text()


def test_the_users_choices_win(tmp_path, fake_steps) -> None:
    data = write_cells_dataset(tmp_path / "cells", 5, (64, 64), seed=0)
    fake_steps(lambda config: 0.05)
    config, plan = cross_validation_config(
        data, None, {"train.device": "cpu"},
        ["infer.postprocess.keep_largest=false", "train.time_budget=5m"], 2)
    assert config.infer.postprocess.keep_largest is False
    assert config.train.time_budget == "5m"
    assert [(d.value, d.reason) for d in plan.decisions
            if d.field == "infer.postprocess.keep_largest"] == [(False, "set by you")]
    chosen = next(c for c in plan.candidates if c.chosen)
    assert chosen.steps == affordable_steps(chosen.step_s, plan_share_s(300.0, 2))
