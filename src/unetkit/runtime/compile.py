"""How a training step runs (eager, ``torch.compile``, CUDA graphs), chosen by measurement.

A small patch's step is bound by kernel launches, not by arithmetic (a 3D U-Net on 4x40x56x40
does 45 steps/s eager on an H200 whatever its width). Two levers remove launches:

* ``compile``: ``torch.compile`` (inductor) of the forward and the loss; the backward is compiled
  with them. It fuses element-wise kernels, at a one-off compile cost (tens of seconds).
* ``graphs``: the whole step (forward, loss, backward, clipping, optimizer) captured once in a
  CUDA graph and replayed: one launch per step, capture in well under a second
  (``unetkit.runtime.graphs``). CUDA only, not with a GradScaler (fp16) or DDP.
* ``compile+graphs``: ``torch.compile`` mode ``reduce-overhead`` (inductor's own CUDA graphs).

``train.compile`` and ``train.cuda_graphs`` each say ``off`` (never), ``on`` (required, unless
the device cannot: then the reason is logged and the step runs without) or ``auto``: the modes
left are candidates, and the fastest *measured* one is used. Measurements are kept in
``~/.cache/unetkit/step_timings.json`` (``$XDG_CACHE_HOME``), keyed by the device's name, the
torch version and the step's signature (network, patch, batch, precision, optimizer, loss), so a
later run of the same step decides at once. A step that was never measured is tried in the run
itself on a GPU (a few real training steps per candidate, compile time charged to the time
budget); on a CPU ``auto`` stays eager unless a measurement says otherwise (a run with
``train.compile: on`` records one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unetkit.runtime.atomic import write_text

log = logging.getLogger(__name__)

MODES = ("eager", "compile", "graphs", "compile+graphs")


@dataclass(frozen=True)
class StepSupport:
    """What the device and run allow: compile needs a compiler, graphs need CUDA alone."""

    device_type: str
    compiler: bool  # inductor can build kernels (a C++ compiler on CPU, triton on CUDA)
    scaler: bool = False  # fp16 with a GradScaler (whose step reads back found_inf)
    distributed: bool = False  # DDP

    def missing(self, mode: str) -> str | None:
        """Why ``mode`` cannot run here, or None."""
        if "compile" in mode and self.device_type not in ("cpu", "cuda"):
            return f"torch.compile is not used on {self.device_type}"
        if "compile" in mode and not self.compiler:
            return ("torch.compile needs a C++ compiler (g++ or clang++)" if
                    self.device_type == "cpu" else "torch.compile needs triton")
        if "graphs" in mode and self.device_type != "cuda":
            return "CUDA graphs need a CUDA device"
        if "graphs" in mode and self.scaler:
            return "CUDA graphs are not used with a GradScaler (fp16): use bf16 or fp32"
        if "graphs" in mode and self.distributed:
            return "CUDA graphs are not used with DDP"
        return None


def support(device: torch.device, *, scaler: bool = False, distributed: bool = False
            ) -> StepSupport:
    """The ``StepSupport`` of ``device`` for a run with or without a GradScaler and DDP."""
    if device.type == "cuda":
        compiler = importlib.util.find_spec("triton") is not None
    else:
        compiler = any(shutil.which(c) for c in ("g++", "clang++", "c++"))
    return StepSupport(device.type, compiler, scaler, distributed)


def candidate_modes(compile: str, graphs: str, allowed: StepSupport
                    ) -> tuple[list[str], list[str]]:
    """The step modes ``train.compile`` / ``train.cuda_graphs`` leave, and why others went.

    ``on`` keeps the modes with the option; when none of them can run here, the reason is
    given and the option is dropped (the step runs without it). ``off`` removes them.
    Returns ``(candidates, reasons)``; candidates are in trial order, eager first.
    """
    reasons: list[str] = []
    modes = [m for m in MODES if allowed.missing(m) is None]
    for option, value, name in (("compile", compile, "train.compile"),
                                ("graphs", graphs, "train.cuda_graphs")):
        if value == "off":
            modes = [m for m in modes if option not in m]
        elif value == "on":
            wanted = [m for m in modes if option in m]
            if wanted:
                modes = wanted
            else:
                reasons.append(f"{name}: on, but {allowed.missing(option)}; running without")
    return modes, reasons


@dataclass(frozen=True)
class Timing:
    """A mode's measured cost: seconds per step, and seconds its warm-up took beyond its steps
    (compilation, capture)."""

    step_s: float
    setup_s: float = 0.0


def run_cost(timing: Timing, steps: int | None = None, budget_s: float | None = None) -> float:
    """What a run pays in a mode (lower is better): with a time budget, minus the steps that
    fit after the setup; with a known number of steps, their seconds plus the setup; else the
    seconds per step."""
    if budget_s is not None:
        return -(budget_s - timing.setup_s) / timing.step_s
    if steps is not None:
        return steps * timing.step_s + timing.setup_s
    return timing.step_s


def choose_mode(candidates: list[str], timings: dict[str, Timing], device_type: str, *,
                steps: int | None = None, budget_s: float | None = None) -> str | None:
    """The mode to run, or None when the candidates must be tried first.

    One candidate: it. Every candidate measured: the cheapest for this run (``run_cost``: a
    compile that takes longer than it saves is not worth it in a short run). Otherwise on CUDA:
    None (the run tries them); elsewhere the cheapest measured one if eager was measured too,
    else eager (compilation costs minutes on a CPU and rarely pays: it is not tried unasked).
    """
    if len(candidates) == 1:
        return candidates[0]
    measured = {m: run_cost(timings[m], steps, budget_s) for m in candidates if m in timings}
    if len(measured) == len(candidates):
        return min(measured, key=measured.__getitem__)
    if device_type == "cuda":
        return None
    if "eager" in measured:
        return min(measured, key=measured.__getitem__)
    return "eager" if "eager" in candidates else candidates[0]


COMPILE_TRIAL_MIN_S = 600.0  # auto tries torch.compile (a minute or more) only in longer runs


def decide(compile: str, graphs: str, allowed: StepSupport, timings: dict[str, Timing], *,
           steps: int | None = None, budget_s: float | None = None
           ) -> tuple[list[str], str | None, list[str]]:
    """``(candidates, chosen, reasons)`` of a run: ``candidate_modes``, then ``choose_mode``;
    when the candidates must be tried and the time budget is under ``COMPILE_TRIAL_MIN_S``,
    ``compile: auto`` leaves out the compile modes never measured (their trial would cost more
    than such a run can win back)."""
    candidates, reasons = candidate_modes(compile, graphs, allowed)
    chosen = choose_mode(candidates, timings, allowed.device_type, steps=steps,
                         budget_s=budget_s)
    if chosen is None and compile == "auto" and budget_s is not None \
            and budget_s < COMPILE_TRIAL_MIN_S:
        candidates = [m for m in candidates if "compile" not in m or m in timings]
        chosen = choose_mode(candidates, timings, allowed.device_type, budget_s=budget_s)
    return candidates, chosen, reasons


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (what a step's speed depends on)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def step_key(device: torch.device, signature: dict[str, Any]) -> str:
    """The cache key of a step: device name, torch version, threads and ``signature`` (JSON)."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    text = json.dumps({"device": device_name(device), "torch": torch.__version__,
                       "threads": threads, "step": signature}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_path() -> Path:
    """``$XDG_CACHE_HOME/unetkit/step_timings.json`` (``~/.cache/...`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unetkit" / "step_timings.json"


class TimingCache:
    """Seconds per step by mode, per step key, in one JSON file (``cache_path()``).

    A missing, unreadable or corrupt file is an empty cache; a failed write is logged and
    ignored: the cache only saves a later run its trial.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()

    def _load(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Timing]:
        """``{mode: Timing}`` measured for ``key`` (empty when none)."""
        entry = self._load().get(key, {})
        timings = {}
        for mode, value in (entry.items() if isinstance(entry, dict) else ()):
            try:
                timing = Timing(float(value["step_s"]), float(value.get("setup_s", 0.0)))
            except (TypeError, KeyError, ValueError):
                continue
            if mode in MODES and timing.step_s > 0 and timing.setup_s >= 0:
                timings[mode] = timing
        return timings

    def put(self, key: str, timings: dict[str, Timing]) -> None:
        """Store ``timings`` for ``key`` (merged over what is there); atomic replace."""
        data = self._load()
        entry = data.get(key) if isinstance(data.get(key), dict) else {}
        data[key] = {**entry, **{m: {"step_s": round(t.step_s, 7), "setup_s": round(t.setup_s, 3)}
                                 for m, t in timings.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as error:
            log.debug("step timings not cached in %s: %s", self.path, error)
