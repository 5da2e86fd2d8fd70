"""What a plan is: the timed candidate networks and the complete config with its reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unetkit.config import Config, config_to_dict
from unetkit.plan.fingerprint import Fingerprint
from unetkit.plan.rules import Decision
from unetkit.runtime.atomic import write_text
from unetkit.runtime.outputs import check_file, check_outside, protected_folders


def size_text(sizes: list[int]) -> str:
    """``[8, 128, 128]`` -> ``8x128x128``."""
    return "x".join(map(str, sizes))


@dataclass
class Candidate:
    """A timed candidate network: first-stage width, seconds per step, steps in the budget."""

    base_width: int
    step_s: float
    steps: int
    chosen: bool = False
    spatial_dims: int = 2
    patch_size: list[int] = field(default_factory=list)
    batch_size: int = 0

    def describe(self) -> str:
        """``2D base width 8, 8x128x128: 1.263 s/step, 605 steps in the budget``."""
        step = size_text([self.batch_size, *self.patch_size])
        return (f"{self.spatial_dims}D base width {self.base_width}, {step}: "
                f"{self.step_s:.3f} s/step, {self.steps} steps in the budget")


@dataclass
class Plan:
    """A complete config, the fingerprint it came from and every decision with its reason."""

    config: Config
    fingerprint: Fingerprint
    decisions: list[Decision]
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict: config, decisions, candidates and fingerprint."""
        return {"config": config_to_dict(self.config),
                "decisions": [asdict(d) for d in self.decisions],
                "candidates": [asdict(c) for c in self.candidates],
                "fingerprint": self.fingerprint.as_dict()}

    def yaml_text(self) -> str:
        """The config as YAML that ``unetkit train --config`` accepts, reasons as comments."""
        lines = ["# unetkit plan: every value below was chosen for this data set and budget.",
                 "# Use it with: unetkit train --data DATA --config THIS_FILE", "#"]
        for decision in self.decisions:
            lines.append(f"# {decision.field} = {decision.value}: {decision.reason}")
        for c in self.candidates:
            mark = " <- chosen" if c.chosen else ""
            lines.append(f"# candidate {c.describe()}{mark}")
        body = yaml.safe_dump(config_to_dict(self.config), sort_keys=False)
        return "\n".join(lines) + "\n\n" + body

    def write(self, path: str | Path) -> Path:
        """Write ``yaml_text()`` to ``path`` (atomically; ``check_plan_file`` first)."""
        return write_text(path, self.yaml_text())


def check_plan_file(path: str | Path, data_dir: str | Path, force: bool = False) -> None:
    """Before planning: ``path`` is a file name in a writable folder outside the data set's
    folders, and no existing file (a hand-written config) unless ``force``.

    Raises:
        OutputError: one line naming ``--out`` and the path (nothing written).
    """
    check_outside(path, "--out", protected_folders([], [data_dir]))
    check_file(path, "--out", force=force)
