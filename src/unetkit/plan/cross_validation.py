"""The config of a cross-validation: one plan for all folds, made for one fold's share.

``unetkit train --data DATA --time T --cross-validate K`` plans once: the planner times its
candidate networks for ``plan_share_s(T, K)`` seconds (``T / K`` less the shares kept for the
summary and for predicting each fold's held-out cases; planning time itself comes off every
fold's share when ``cross_validate`` shares out what is left). Every fold trains that config;
its ``train.time_budget`` stays ``T``, the budget of all folds together. Each fold validates
``1 / K`` of the cases (the planner's validation period counts them), and
``infer.postprocess.keep_largest: auto`` lets the pooled out-of-fold predictions decide the
clean-up, unless the user fixed it. The plan prints these choices with their reasons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unetkit.config import Config, apply_values, parse_duration
from unetkit.plan.auto import run_config
from unetkit.plan.planner import Plan
from unetkit.plan.rules import Decision
from unetkit.plan.user import UserChoices
from unetkit.train.cross_validation import (
    PREDICT_SHARE,
    SUMMARY_SHARE,
    check_folds,
    plan_share_s,
)

KEEP_LARGEST = "infer.postprocess.keep_largest"


def cross_validation_decisions(folds: int, total: str | None, share_s: float | None,
                               user: UserChoices) -> list[Decision]:
    """The choices a cross-validation adds to a plan, with their reasons."""
    decisions = [Decision("data.folds", folds, f"cross-validation: {folds} folds, each "
                          "validated on the cases it never trains on"),
                 Decision("data.val_fraction", round(1 / folds, 4), f"each fold validates "
                          f"1/{folds} of the cases")]
    if KEEP_LARGEST not in user.fields:
        decisions.append(Decision(KEEP_LARGEST, "auto", "kept when the largest component per "
                                  "class raises the pooled out-of-fold Dice (nnU-Net)"))
    if share_s is not None:
        decisions.append(Decision(
            "train.time_budget", total, f"all {folds} folds together; each fold is planned "
            f"for {share_s:.0f} s: {total} / {folds} less {SUMMARY_SHARE:.0%} for the summary "
            f"and {PREDICT_SHARE:.0%} for predicting its held-out cases (planning time comes "
            "off every fold's share)"))
    return decisions


def cross_validation_config(data_dir: str | Path | None, config_file: str | Path | None,
                            values: dict[str, Any], overrides: list[str], folds: int
                            ) -> tuple[Config, Plan | None]:
    """The config every fold trains (``train.time_budget``: all folds') and its plan.

    Args:
        data_dir: the data folder.
        config_file: a YAML config (then nothing is planned; only ``data.folds`` is set).
        values: typed options ``{"section.field": value}`` (``train.time_budget``: all folds).
        overrides: ``section.field=value`` strings.
        folds: K.
    """
    check_folds(folds)
    user = UserChoices(values, overrides)
    total = user.value("train.time_budget")
    if config_file is not None or data_dir is None:
        config, _ = run_config(data_dir, config_file, values, overrides)
        return apply_values(config, {"data.folds": folds}, source="--cross-validate"), None
    share_s = plan_share_s(parse_duration(total), folds) if total else None
    decisions = cross_validation_decisions(folds, total, share_s, user)
    fixed = {d.field: d.value for d in decisions if d.field != "train.time_budget"}
    planned = {**values, **fixed, "train.time_budget": None if share_s is None
               else f"{share_s:.1f}s"}
    config, plan = run_config(data_dir, None, planned, [o for o in overrides
                                                        if not o.startswith("train.time_budget=")])
    assert plan is not None
    config = apply_values(config, {"train.time_budget": total}, source="--time")
    plan.config = config
    fields = {d.field for d in decisions}
    plan.decisions = [d for d in plan.decisions if d.field not in fields] + decisions
    return config, plan


__all__ = ["cross_validation_config", "cross_validation_decisions"]
