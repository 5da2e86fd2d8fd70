"""End of a run with ``infer.threshold: auto``: calibrate ``best.pt``'s decision threshold.

The network saved in ``best.pt`` predicts the calibration images the way ``unetkit predict``
will (``unetkit.infer.calibration``); the chosen threshold is written into that checkpoint's
``config.infer.threshold`` (and into ``last.pt`` when it holds the same weights), the details
into ``checkpoint["calibration"]`` and ``RUN/calibration.json``. Calibration images are the
validation cases when there are any, else the held-out bands of the training cases
(``data.calibration_band``: rows whose labels never trained), else the training cases, where
the network is more confident than on new images; a 2D run on the slices of volumes calibrates
on its training volumes, stacked back from their slices, as ``unetkit predict`` reads them. Pixels
labelled ``train.loss.ignore_index`` (outside a region of interest) do not count.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from unetkit.config import Config
from unetkit.data.dataset import evenly_spaced
from unetkit.data.sampling import from_slices
from unetkit.infer.calibration import calibrate_threshold, store_calibration
from unetkit.runtime.checkpoint import TrainingState, load_checkpoint, model_from_checkpoint
from unetkit.train.run_dir import store_end_of_run
from unetkit.train.validation import live_predictor

if TYPE_CHECKING:
    from unetkit.train.data import TrainData
    from unetkit.train.setup import Run

log = logging.getLogger(__name__)


def wants_calibration(config: Config) -> bool:
    """True when the config asks for a calibrated threshold."""
    return config.infer.threshold == "auto"


def check_calibration(config: Config, labels: dict[int, str]) -> None:
    """Refuse ``threshold: auto`` before training when the data are not two-class or the
    model has regions (each decided at probability 0.5)."""
    if wants_calibration(config) and config.data.regions:
        raise ValueError("infer.threshold: auto calibrates a two-class decision; a region "
                         "model (data.regions) decides each region at probability 0.5: leave "
                         "infer.threshold unset")
    if wants_calibration(config) and len(labels) != 2:
        raise ValueError(f"infer.threshold: auto needs two labels (background and one class); "
                         f"this data set has {len(labels)}: {sorted(labels)}")


def calibration_cases(run: Run) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """``(images, masks, source)``: validation cases, else the held-out bands of the training
    cases (``data.calibration_band``), else the training cases; evenly thinned, and volumes
    in a 2D run on slices (the predictor predicts volumes, as ``unetkit predict`` does)."""
    data, d, limit = run.data, run.config.data, run.config.infer.calibration_images
    if data.val_images:  # whole cases already
        keep = evenly_spaced(len(data.val_images), limit)
        return [data.val_images[i] for i in keep], [data.val_masks[i] for i in keep], \
            "validation"
    masks, source = (data.calibration_masks, "held-out band") if data.calibration_masks else \
        (data.train_masks, "training")
    return (*training_volumes(data, masks, d.slice_axis, d.slice_context, limit), source)


def training_volumes(data: TrainData, masks: list[np.ndarray], axis: int | None,
                     context: int = 0, limit: int | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """At most ``limit`` training cases, evenly spaced: images ``(C, *spatial)`` and
    ``masks`` (the training masks or held-out bands, one per image or slice). When the run
    trains on the slices of volumes (``data.train_slices``, slice ``axis``), the chosen cases'
    slices are stacked back into volumes ``(C, X, Y, Z)`` and ``(X, Y, Z)``."""
    if not data.train_slices:
        keep = evenly_spaced(len(data.train_images), limit or len(data.train_images))
        return [data.train_images[i] for i in keep], [masks[i] for i in keep]
    counts = data.train_slices
    starts = np.cumsum([0, *counts])
    keep = evenly_spaced(len(counts), limit or len(counts))
    images, labels = [], []
    for i in keep:
        part = slice(int(starts[i]), int(starts[i + 1]))
        images += from_slices(data.train_images[part], [counts[i]], axis, context)
        labels += from_slices(masks[part], [counts[i]], axis, masks=True)
    return images, labels


def calibrate_run(run: Run) -> dict[str, Any] | None:
    """Calibrate ``RUN/best.pt`` (rank 0); returns the calibration record or None if skipped."""
    if not wants_calibration(run.config) or not run.info.is_main or run.run_dir is None:
        return None
    best = run.run_dir / "best.pt"
    if not best.is_file():
        log.warning("calibration skipped: %s was not written", best)
        return None
    checkpoint = load_checkpoint(best)
    config = run.config
    predictor = live_predictor(model_from_checkpoint(checkpoint, str(best)), config,
                               run.data.labels, run.device, run.infer_plan)
    images, masks, source = calibration_cases(run)
    record = calibrate_threshold(predictor, images, masks, beta=config.infer.calibration_beta,
                                 source=source, preprocessed=True,
                                 ignore_index=config.train.loss.ignore_index).as_dict()
    store_end_of_run(run.run_dir, store_calibration, record,
                     TrainingState.from_checkpoint(checkpoint).step, "calibration.json")
    return record


__all__ = ["calibrate_run", "calibration_cases", "check_calibration", "training_volumes"]
