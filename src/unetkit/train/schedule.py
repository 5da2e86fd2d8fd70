"""Learning-rate schedules as pure functions of the iteration (nanoGPT style).

The schedule is planned in *iterations*, not epochs: with a time budget the trainer learns the
total number of iterations only after measuring the first ones, and the schedule must reach its end
exactly when the budget runs out. Every function maps ``(step, total_steps)`` to a learning rate and
has no state, so resuming a run only needs ``step`` and ``total_steps``.
"""

from __future__ import annotations

import math

from unetkit.config import TrainConfig
from unetkit.runtime.training_state import TrainingState

POLY_EXPONENT = 0.9  # nnU-Net's value


def poly_lr(step: int, total_steps: int, base_lr: float, exponent: float = POLY_EXPONENT) -> float:
    """nnU-Net's polynomial decay: ``base_lr * (1 - step / total_steps) ** exponent``.

    Args:
        step: iterations done so far (0 for the first update).
        total_steps: planned number of iterations; ``step >= total_steps`` gives 0.
        base_lr: learning rate at step 0.
        exponent: decay exponent (0.9 as in nnU-Net).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = min(max(step, 0) / total_steps, 1.0)
    return base_lr * (1.0 - progress) ** exponent


def cosine_lr(
    step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    """Linear warm-up from ``base_lr / (warmup_steps + 1)`` then cosine decay to ``min_lr``.

    Args:
        step: iterations done so far.
        total_steps: planned number of iterations (warm-up included).
        base_lr: peak learning rate, reached at ``step == warmup_steps``.
        warmup_steps: length of the linear warm-up; 0 starts at the peak.
        min_lr: learning rate at ``step >= total_steps``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    step = max(step, 0)
    warmup_steps = min(warmup_steps, total_steps - 1)
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Warm-up multiplier ``(step + 1) / (warmup_steps + 1)`` below ``warmup_steps``, else 1."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return 1.0


def lr_at(
    schedule: str, step: int, total_steps: int, base_lr: float, warmup_steps: int = 0
) -> float:
    """Learning rate of a named schedule (``poly``, ``cosine``, ``constant``) at ``step``.

    Warm-up applies to every schedule; for ``poly`` and ``constant`` it multiplies the value.
    """
    if schedule == "poly":
        return poly_lr(step, total_steps, base_lr) * warmup_factor(step, warmup_steps)
    if schedule == "cosine":
        return cosine_lr(step, total_steps, base_lr, warmup_steps)
    if schedule == "constant":
        return base_lr * warmup_factor(step, warmup_steps)
    raise ValueError(f"unknown schedule {schedule!r}: use 'poly', 'cosine' or 'constant'")


def scheduled_lr(train: TrainConfig, s: TrainingState) -> float:
    """The schedule's learning rate at step ``s.step``, never above the previous step's
    (``s.lr``) after warm-up.

    A time-budget re-plan moves the schedule's end. For the poly schedule the decay restarts
    from the re-plan's step and learning rate (``replan``) and reaches 0 at the new end: the
    rate neither jumps back up when the plan grows nor sits at ~0 for the steps a longer plan
    adds (unchanged plans give exactly the original curve). Other schedules are capped.
    """
    if train.schedule == "poly" and s.anchor_lr > 0.0 and s.step >= s.anchor_step:
        remaining = max(s.total_steps - s.anchor_step, 1)
        return s.anchor_lr * poly_lr(s.step - s.anchor_step, remaining, 1.0)
    lr = lr_at(train.schedule, s.step, s.total_steps, train.lr, s.warmup_steps)
    if s.step > s.warmup_steps and s.lr > 0.0:
        lr = min(lr, s.lr)
    return lr


def replan(s: TrainingState, total_steps: int) -> None:
    """Set a new planned total of steps; after warm-up the poly decay restarts from here."""
    total_steps = max(total_steps, s.step, 1)
    if total_steps != s.total_steps and s.step > s.warmup_steps and s.lr > 0.0:
        s.anchor_step, s.anchor_lr = s.step, s.lr
    s.total_steps = total_steps
