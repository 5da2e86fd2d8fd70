"""Planning a fine-tuning run: the ``--init`` checkpoint's fixed fields join the user's choices.

``with_init(user, data_dir)`` reads the checkpoint named by ``train.init`` (``--init``) and
returns the user's choices with the fields it fixes (``unetkit.train.init_source``), after
refusing, each in one line, a user setting that contradicts the checkpoint (``--model
resunet`` for a U-Net's weights) and data the network cannot train on (a 2D network's weights
for 3D volumes). The planner then plans only what the weights leave free.
"""

from __future__ import annotations

from pathlib import Path

from unetkit.config import build_config, config_to_dict
from unetkit.plan.user import UserChoices
from unetkit.train.init_source import InitError, InitSource, first_case


def with_init(user: UserChoices, data_dir: str | Path | None) -> UserChoices:
    """``user`` with ``init`` set from ``user.value("train.init")`` (unchanged without one).

    Raises:
        CheckpointError: the checkpoint cannot be read (names the file).
        InitError: a choice of the user's contradicts the checkpoint, or the data's
            dimensions do not fit its network (one line each).
    """
    path = user.value("train.init")
    if path is None:
        return user
    source = InitSource.read(path)
    values = source.fixed_values()
    check_conflicts(user, values, source)
    if data_dir is not None:
        _, dims, where = first_case(data_dir, source.config)
        source.check_dims(dims, where)
    return UserChoices(user.values, user.overrides, init=values, init_name=str(source.path))


def check_conflicts(user: UserChoices, values: dict[str, object], source: InitSource) -> None:
    """Refuse a field the user set (options, ``--set``) to other than the checkpoint's value.

    Raises:
        InitError: ``model.name: --init X holds unet (...); leave it unset``.
    """
    own = config_to_dict(build_config(None, user.values, user.overrides))
    for name in sorted(user.own_fields):
        fixed = next((key for key in values if name == key or name.startswith(key + ".")), None)
        if fixed is None:
            continue
        section, key = fixed.split(".", 1)
        if own[section][key] != values[fixed]:
            raise InitError(f"{name}: --init {source.path} fixes {fixed} to {values[fixed]!r} "
                            f"(its {source.describe()} and the inputs it was trained on); "
                            "leave it unset, or train without --init")


__all__ = ["InitError", "check_conflicts", "with_init"]
