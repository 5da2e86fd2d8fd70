"""What a plan is: the timed candidate networks and the complete config with its reasons."""

from __future__ import annotations

import math
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


def gib(size: float) -> str:
    """``1.23 GiB``: a byte count as the plan prints it."""
    return f"{size / 2**30:.2f} GiB"


LAYOUTS = {True: "channels-last", False: "contiguous"}  # PrecisionPlan.channels_last -> name


@dataclass
class Candidate:
    """A timed candidate network: first-stage width, seconds per step in the layout it would
    train in (``layout``; ``other_layout_s``: the other layout's step, when both were timed),
    steps in the budget, and the peak memory of a step (measured on CUDA, else estimated; None
    when no memory bound was planned). ``note``: why a candidate grown for a GPU was not taken.
    Every number the plan prints about a candidate is one of these."""

    base_width: int
    step_s: float
    steps: int
    chosen: bool = False
    spatial_dims: int = 2
    patch_size: list[int] = field(default_factory=list)
    batch_size: int = 0
    layout: str = ""
    other_layout_s: float | None = None
    memory_bytes: int | None = None
    memory_measured: bool = False
    note: str = ""

    def timing(self) -> str:
        """``1.263 s/step contiguous, 605 steps``: the numbers decisions quote."""
        step = "out of memory" if math.isinf(self.step_s) else f"{self.step_s:.3f} s/step"
        return " ".join([step, self.layout] if self.layout else [step]) + f", {self.steps} steps"

    def describe(self) -> str:
        """``2D base width 8, 8x128x128: 1.263 s/step contiguous, 605 steps in the budget
        (channels-last 1.517 s/step)``, the memory and the note when there are."""
        step = size_text([self.batch_size, *self.patch_size])
        text = f"{self.spatial_dims}D base width {self.base_width}, {step}: {self.timing()} " \
               "in the budget"
        if self.other_layout_s is not None:
            text += f" ({LAYOUTS[self.layout == 'contiguous']} {self.other_layout_s:.3f} s/step)"
        if self.memory_bytes is not None:
            text += f", {gib(self.memory_bytes)} " + ("measured" if self.memory_measured
                                                      else "estimated")
        return text + (f"; {self.note}" if self.note else "")


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
