"""Where a training run stands: ``TrainingState``, written into every training checkpoint.

Kept apart from the checkpoint's reader and writer (``unetkit.runtime.checkpoint``, which
re-exports it) because the training loop updates it at every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainingState:
    """Where a training run stands; written into every training checkpoint, read on resume.

    ``epoch`` counts completed epochs; ``step`` optimisation steps; ``step_in_epoch`` and
    ``partial_loss`` locate a stop inside an epoch; ``total_steps`` / ``planned_epochs`` are the
    schedule's current plan (``planned``: set by the time budget); ``lr`` caps the next step's
    learning rate, and ``anchor_step``/``anchor_lr`` are where a re-plan re-started the poly
    decay (``unetkit.train.schedule.scheduled_lr``).
    """

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    partial_loss: float = 0.0
    total_steps: int = 1
    warmup_steps: int = 0
    planned_epochs: int = 1
    planned: bool = False
    lr: float = 0.0
    anchor_step: int = 0
    anchor_lr: float = 0.0
    best_metric: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    data_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TrainingState:
        """The state stored in ``checkpoint`` (format 1 or 2)."""
        stored = dict(checkpoint.get("training") or {})
        for key in ("metrics", "best_metric"):  # format 1 kept these at the top level
            if key not in stored and key in checkpoint:
                stored[key] = checkpoint[key]
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in names})
