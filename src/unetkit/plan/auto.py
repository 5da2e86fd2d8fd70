"""Which config a training run uses: the user's file, or a plan made for the data and budget.

``unetkit train --data DATA --time T`` without ``--config`` plans (``make_plan``) and applies
the user's options and ``--set`` overrides on top of the plan (a ``--init`` checkpoint's network
and input preprocessing too); with ``--config`` the file is the starting point and nothing is
planned (``fit`` lays a ``train.init`` checkpoint's fields over it). The plan and the
fingerprint go into the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetkit.config import Config, build_config
from unetkit.plan.init_plan import with_init
from unetkit.plan.planner import Plan, make_plan
from unetkit.plan.user import UserChoices


def run_config(data_dir: str | Path | None, config_file: str | Path | None,
               values: dict[str, Any], overrides: list[str], *, elapsed_s: float = 0.0,
               progress: Callable[[str], None] | None = None) -> tuple[Config, Plan | None]:
    """The config of a new run and the plan it came from (None with a config file).

    Args:
        data_dir: the data folder (needed to plan).
        config_file: a YAML config; when given, nothing is planned.
        values: typed options ``{"section.field": value}`` (None values are skipped).
        overrides: ``section.field=value`` strings, applied last.
        elapsed_s: seconds of the time budget already used before planning.
        progress: called with one line per planning step.
    """
    if config_file is not None or data_dir is None:
        config = build_config(config_file, values, overrides)
        with_init(UserChoices(values, overrides), data_dir)  # --init against options: refused
        return config, None
    user = UserChoices(values, overrides)
    user.check()  # invalid options fail now, not after planning
    if not Path(data_dir).is_dir():
        raise ValueError(f"--data {data_dir}: not a folder")
    user = with_init(user, data_dir)  # --init: its network and input side are fixed
    plan = make_plan(data_dir, values.get("train.time_budget"),
                     device=values.get("train.device") or "auto", elapsed_s=elapsed_s,
                     progress=progress, user=user)
    config = user.apply(plan.config)
    plan.config = config
    return config, plan


def plan_files(plan: Plan) -> dict[str, str]:
    """``{"plan.yaml": ..., "fingerprint.json": ...}`` for the run folder."""
    return {"plan.yaml": plan.yaml_text(),
            "fingerprint.json": json.dumps(plan.fingerprint.as_dict(), indent=2)}
