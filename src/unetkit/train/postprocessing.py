"""End of a run with ``infer.postprocess.keep_largest: auto``: keep it or not, on validation.

nnU-Net keeps only the largest connected component of each class when that raises the Dice of
its cross-validation predictions. unetkit decides the same on the validation cases, at no extra
prediction: each validation scores the decided maps twice, as they are and with only their
largest component per class (``val_dice_largest``, ``unetkit.train.validation``). The metrics
of the epoch ``best.pt`` holds decide: the clean-up is kept when it raises the mean Dice. The
choice is written into ``best.pt``'s ``config.infer.postprocess.keep_largest`` (and into
``last.pt`` when it holds the same weights), the evidence into ``checkpoint["postprocessing"]``
and ``RUN/postprocessing.json``. Without validation cases nothing can decide: it stays off.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetkit.runtime.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from unetkit.train.run_dir import store_end_of_run

if TYPE_CHECKING:
    from unetkit.train.setup import Run

log = logging.getLogger(__name__)


def keep_largest_choice(metrics: dict[str, Any], on: str = "validation") -> dict[str, Any]:
    """``{"keep_largest": bool, "val_dice": .., "val_dice_largest": .., "reason": ..}`` from
    one validation's metrics (or, ``on``, other predictions' such as a cross-validation's
    pooled out-of-fold ones): kept only when it raises the mean Dice (ties keep the map)."""
    plain, largest = metrics.get("val_dice"), metrics.get("val_dice_largest")
    if plain is None or largest is None or math.isnan(plain) or math.isnan(largest):
        return {"keep_largest": False, "val_dice": plain, "val_dice_largest": largest,
                "reason": f"no {on} Dice to decide on: off"}
    keep = largest > plain
    return {"keep_largest": keep, "val_dice": plain, "val_dice_largest": largest,
            "reason": f"{on} Dice {largest:.4f} with the largest component per class "
                      f"against {plain:.4f} without: {'kept' if keep else 'off'}"}


def store_postprocessing(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` into the checkpoint at ``path`` and its choice into its config."""
    checkpoint = load_checkpoint(path)
    checkpoint["postprocessing"] = record
    checkpoint["config"]["infer"]["postprocess"]["keep_largest"] = record["keep_largest"]
    save_checkpoint(checkpoint, path)


def choose_postprocessing(run: Run) -> dict[str, Any] | None:
    """Decide ``keep_largest: auto`` for ``RUN/best.pt`` (rank 0); None when not asked."""
    if (run.config.infer.postprocess.keep_largest != "auto" or not run.info.is_main
            or run.run_dir is None):
        return None
    best = run.run_dir / "best.pt"
    if not best.is_file():
        log.warning("post-processing choice skipped: %s was not written", best)
        return None
    state = TrainingState.from_checkpoint(load_checkpoint(best))
    record = {**keep_largest_choice(state.metrics), "epoch": state.epoch}
    store_end_of_run(run.run_dir, store_postprocessing, record, state.step,
                     "postprocessing.json")
    log.info("post-processing: %s", record["reason"])
    return record


__all__ = ["choose_postprocessing", "keep_largest_choice", "store_postprocessing"]
