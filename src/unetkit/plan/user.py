"""What the user fixed on the command line, laid over a planned config.

``unetkit train --data DATA --time T --set FIELD=VALUE`` plans, then applies the user's typed
options and ``--set`` overrides on top. The planner applies them too, before it times the
candidate networks, so that what it times (loss, batch, patch, norm, ...) is what will train
and its step counts, width choice and validation period hold for the run.

A start checkpoint (``--init``, ``unetkit.train.init_source``) fixes its network and input
preprocessing the same way (``init``): that network is the only candidate timed, the planned
patch is rounded to sizes it accepts, and the plan lists those fields as ``from --init``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unetkit.config import Config, apply_overrides, apply_values, build_config, field_value
from unetkit.config.io import overrides_to_values
from unetkit.nn.sizes import model_multiples, nearest_valid_length
from unetkit.plan.rules import Decision
from unetkit.train.init_source import lay_over

NETWORK_SIZE = ("model.widths", "model.base_width", "model.depth")
PER_STAGE = ("widths", "strides", "kernel_sizes")  # planned lists that follow the depth
DIMS = frozenset({"model.spatial_dims", "data.slice_axis"})  # together they decide 2D vs 3D


@dataclass
class UserChoices:
    """Typed options (``{"section.field": value}``, None = not given) and ``--set`` strings."""

    values: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    init: dict[str, Any] = field(default_factory=dict)  # fields a --init checkpoint fixes
    init_name: str = ""  # that checkpoint

    @property
    def own_fields(self) -> set[str]:
        """The dotted fields the user set with options and ``--set``."""
        given = {k for k, v in self.values.items() if v is not None}
        return given | set(overrides_to_values(self.overrides))

    @property
    def fields(self) -> set[str]:
        """The dotted fields fixed: the user's and the ``--init`` checkpoint's."""
        return self.own_fields | set(self.init)

    def value(self, name: str) -> Any:
        """The value the user set for ``name`` (``--set`` wins over options), else the
        ``--init`` checkpoint's, else None."""
        overrides = overrides_to_values(self.overrides)
        if name in overrides:
            return overrides[name]
        given = self.values.get(name)
        return given if given is not None else self.init.get(name)

    def sizes_network(self) -> bool:
        """The user (or ``--init``) set the network's size: the planner times it only."""
        return bool(self.fields & set(NETWORK_SIZE))

    def check(self) -> None:
        """Raise ``ConfigError`` now for an invalid option or ``--set``, before any timing."""
        self.apply(Config())

    def apply(self, base: Config) -> Config:
        """``base`` with the user's values laid over it. A base width or depth without
        ``model.widths`` drops the planned per-stage lists, which no longer fit."""
        if self.init:
            base = lay_over(base, self.init)
        if self.fields & {"model.base_width", "model.depth"} and "model.widths" not in self.fields:
            base = apply_overrides(base, [f"model.{name}=null" for name in PER_STAGE
                                          if name in type(base.model).model_fields])
        config = build_config(None, self.values, self.overrides, base=base)
        if self.init and "data.patch_size" not in self.own_fields:
            config = apply_values(config, {"data.patch_size": accepted_patch(config)},
                                  source="plan")
        return config

    def marked(self, decisions: list[Decision], config: Config) -> list[Decision]:
        """``decisions`` with each field ``--init`` fixes decided ``from --init`` (added when
        the planner had no decision for it), a patch rounded for its network noted, and each
        field an option or ``--set`` fixed given as the user's choice with the value that
        trains (2D vs 3D: both fields, naming the one set)."""
        if self.init:
            why = f"from --init {self.init_name}"
            fixed = {key: Decision(key, value, why) for key, value in leaves(self.init).items()}
            decisions = [fixed.pop(d.field, d) for d in decisions]
            patch = config.data.patch_size
            decisions = [Decision(d.field, patch, f"{d.reason}; rounded to what the --init "
                                  "network accepts")
                         if d.field == "data.patch_size" and d.value != patch else d
                         for d in decisions] + list(fixed.values())
        return self._own(decisions, config)

    def _own(self, decisions: list[Decision], config: Config) -> list[Decision]:
        """The decisions of the fields the user set, as the user's choice: the planner's own
        reason (a step count, the data) did not decide them, and its value may not train. A
        reason that already credits the user (``the network you set``) is kept."""
        own = self.own_fields
        dims = own & DIMS
        out = []
        for d in decisions:
            if d.field in DIMS and dims:
                d = Decision(d.field, field_value(config, d.field),
                             f"set by you ({', '.join(sorted(dims))})")
            elif d.field in own and "you set" not in d.reason:
                d = Decision(d.field, field_value(config, d.field), "set by you")
            out.append(d)
        decided = {d.field for d in out}
        return out + [Decision(name, field_value(config, name), "set by you")
                      for name in sorted(own - decided)]


def leaves(values: dict[str, Any]) -> dict[str, Any]:
    """``{"data.normalization": {"scheme": "ct"}}`` -> ``{"data.normalization.scheme": "ct"}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(leaves({f"{key}.{k}": v for k, v in value.items()}))
        else:
            out[key] = value
    return out


def accepted_patch(config: Config) -> list[int]:
    """``data.patch_size`` with each axis rounded down (else up) to a length the network of
    ``config`` accepts."""
    m = config.model
    patch = []
    for length, multiple in zip(config.data.patch_size, model_multiples(m), strict=True):
        patch.append(nearest_valid_length(length, m.depth, m.padding, "down", multiple)
                     or nearest_valid_length(length, m.depth, m.padding, "up", multiple)
                     or length)
    return patch
