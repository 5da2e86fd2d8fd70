"""What the user fixed on the command line, laid over a planned config.

``unetkit train --data DATA --time T --set FIELD=VALUE`` plans, then applies the user's typed
options and ``--set`` overrides on top. The planner applies them too, before it times the
candidate networks, so that what it times (loss, batch, patch, norm, ...) is what will train
and its step counts, width choice and validation period hold for the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unetkit.config import Config, apply_overrides, build_config
from unetkit.config.io import overrides_to_values

NETWORK_SIZE = ("model.widths", "model.base_width", "model.depth")
PER_STAGE = ("widths", "strides", "kernel_sizes")  # planned lists that follow the depth


@dataclass
class UserChoices:
    """Typed options (``{"section.field": value}``, None = not given) and ``--set`` strings."""

    values: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    @property
    def fields(self) -> set[str]:
        """The dotted fields the user set."""
        given = {k for k, v in self.values.items() if v is not None}
        return given | set(overrides_to_values(self.overrides))

    def value(self, name: str) -> Any:
        """The value the user set for ``name`` (``--set`` wins over options), else None."""
        return overrides_to_values(self.overrides).get(name, self.values.get(name))

    def sizes_network(self) -> bool:
        """The user set the network's size: the planner times that network only."""
        return bool(self.fields & set(NETWORK_SIZE))

    def check(self) -> None:
        """Raise ``ConfigError`` now for an invalid option or ``--set``, before any timing."""
        self.apply(Config())

    def apply(self, base: Config) -> Config:
        """``base`` with the user's values laid over it. A base width or depth without
        ``model.widths`` drops the planned per-stage lists, which no longer fit."""
        if self.fields & {"model.base_width", "model.depth"} and "model.widths" not in self.fields:
            base = apply_overrides(base, [f"model.{name}=null" for name in PER_STAGE
                                          if name in type(base.model).model_fields])
        return build_config(None, self.values, self.overrides, base=base)
