"""Time-budget planner: measure the first iterations, plan the epochs that fit, report the ETA.

``unetkit train --time 10m`` must use the ten minutes well: training, validation and checkpoint
writing all happen *inside* the budget, and the learning-rate schedule is planned in iterations so
it reaches its end when the time runs out. The pure function ``plan_epochs`` does the arithmetic;
``TimeBudget`` keeps the measurements (seconds per training step, per validation, per checkpoint)
and re-plans after every epoch, so a run that slows down (or speeds up) is corrected as it goes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# Fraction of the budget held back for the final validation/checkpoint and timing noise.
SAFETY_FRACTION = 0.03


def plan_epochs(
    budget_s: float,
    elapsed_s: float,
    epochs_done: int,
    step_s: float,
    steps_per_epoch: int,
    val_s: float,
    val_every: int,
    epoch_overhead_s: float = 0.0,
    safety_s: float = 0.0,
) -> int:
    """Total epochs (done + still to run) that fit in the budget; at least ``epochs_done``.

    Every epoch costs ``steps_per_epoch * step_s + epoch_overhead_s`` (checkpoint writing, logging),
    one in ``val_every`` epochs also costs ``val_s``; the last planned epoch always validates, so
    one extra validation is reserved.

    Args:
        budget_s: the whole budget in seconds.
        elapsed_s: seconds used so far (set-up included).
        epochs_done: epochs already completed.
        step_s: measured seconds per training iteration.
        steps_per_epoch: iterations per epoch.
        val_s: measured (or estimated) seconds per validation pass.
        val_every: validation period in epochs.
        epoch_overhead_s: seconds per epoch outside training steps and validation.
        safety_s: seconds kept free at the end.
    """
    remaining = budget_s - elapsed_s - safety_s - val_s
    per_epoch = steps_per_epoch * step_s + epoch_overhead_s + val_s / val_every
    if remaining <= 0 or per_epoch <= 0:
        return epochs_done
    return epochs_done + max(int(math.floor(remaining / per_epoch)), 0)


@dataclass
class TimeBudget:
    """Measurements and planning for a time-limited run (seconds from ``time.monotonic``).

    Attributes:
        budget_s: the budget in seconds.
        steps_per_epoch: iterations per epoch.
        val_every: validation period in epochs.
        warmup_steps: first iterations excluded from the timing (allocation, autotuning).
    """

    budget_s: float
    steps_per_epoch: int
    val_every: int = 1
    warmup_steps: int = 2
    start: float = field(default_factory=lambda: time.monotonic())
    step_s: float | None = None
    val_s: float | None = None
    val_estimate_s: float = 0.0  # used until a validation has been timed
    final_s: float = 0.0  # work after the last epoch inside the budget (threshold calibration)
    overhead_s: float = 0.0
    warmup_s: float = 0.0  # compile and capture steps (already in elapsed; not in step_s)
    _timed_steps: int = 0
    _timed_seconds: float = 0.0

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    def remaining(self) -> float:
        """Seconds left (may be negative once the budget is spent)."""
        return self.budget_s - self.elapsed()

    def expired(self, ahead_s: float = 0.0) -> bool:
        """True when only the final validation, checkpoint and safety margin still fit, or
        will no longer fit after ``ahead_s`` more seconds of training (the steps a run takes
        before it next checks: under DDP the ranks agree every few steps)."""
        val_s = self.val_s if self.val_s is not None else self.val_estimate_s
        reserve = self.budget_s * SAFETY_FRACTION + val_s + self.overhead_s + self.final_s
        return self.remaining() - ahead_s <= reserve

    def record_step(self, seconds: float, global_step: int) -> None:
        """Add one training iteration's duration (ignored for the first ``warmup_steps``).

        Steps are timed on the host without waiting for the device: a GPU step's host time can
        be shorter than its device time, and the difference shows in the step that waits (every
        few steps the losses are read back), so the mean over the steps stays right."""
        if global_step < self.warmup_steps:
            return
        self._timed_steps += 1
        self._timed_seconds += seconds
        self.step_s = self._timed_seconds / self._timed_steps

    def record_warmup(self, seconds: float) -> None:
        """A step that compiled or captured the training step (``unetkit.train.step``): its
        time is spent (``elapsed`` holds it, so the plan leaves it out of what remains) but it
        says nothing about the steps to come, so ``step_s`` leaves it out."""
        self.warmup_s += seconds

    def restart_steps(self) -> None:
        """The step changed (the trial of step modes settled): time steps afresh; the last
        ``step_s`` stands until the first new step is timed."""
        self._timed_steps, self._timed_seconds = 0, 0.0

    def record_validation(self, seconds: float) -> None:
        """Keep the slowest validation seen: planning with it never overruns the budget."""
        self.val_s = seconds if self.val_s is None else max(self.val_s, seconds)

    def record_overhead(self, seconds: float) -> None:
        """Per-epoch overhead (checkpointing, logging); smoothed over epochs."""
        self.overhead_s = seconds if self.overhead_s == 0 else 0.5 * (self.overhead_s + seconds)

    @property
    def timed_steps(self) -> int:
        """Iterations timed so far (warm-up ones excluded)."""
        return self._timed_steps

    def ready(self) -> bool:
        """True once enough iterations were timed to plan."""
        return self.step_s is not None

    def plan(
        self, epochs_done: int, val_estimate_s: float | None = None, epoch_progress: float = 0.0
    ) -> int:
        """Total epochs that fit, from the measurements (``val_estimate_s`` until measured).

        ``epoch_progress`` (0..1) is the part of the current epoch already trained: its time is
        counted as still available, so the current epoch is one of the planned ones.
        """
        if self.step_s is None:
            raise RuntimeError("TimeBudget.plan called before any iteration was timed")
        if val_estimate_s is not None:
            self.val_estimate_s = val_estimate_s
        in_epoch = epoch_progress * self.steps_per_epoch * self.step_s
        return plan_epochs(
            self.budget_s - self.final_s,
            self.elapsed() - in_epoch,
            epochs_done,
            self.step_s,
            self.steps_per_epoch,
            self.val_s if self.val_s is not None else self.val_estimate_s,
            self.val_every,
            self.overhead_s,
            self.budget_s * SAFETY_FRACTION,
        )

    def eta(self, epochs_left: int) -> float:
        """Estimated seconds to finish ``epochs_left`` more epochs."""
        step_s = self.step_s or 0.0
        val_s = self.val_s or 0.0
        per_epoch = self.steps_per_epoch * step_s + self.overhead_s + val_s / self.val_every
        return max(epochs_left, 0) * per_epoch + val_s


def inference_estimate_s(voxels: int, passes: int, step_s: float, step_voxels: int) -> float:
    """Seconds to predict ``voxels`` (``passes`` forwards each, e.g. TTA), before it is timed.

    A forward pass costs about a third of a training step per voxel (no backward, no
    augmentation); counted at half a step per voxel, on the safe side. ``step_voxels`` is what
    one training step sees (patch voxels times batch size).
    """
    return 0.5 * step_s * voxels * passes / max(step_voxels, 1)


def format_seconds(seconds: float) -> str:
    """``3725.4`` -> ``'1h02m05s'``; ``75`` -> ``'1m15s'``; ``9.5`` -> ``'9.5s'``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
