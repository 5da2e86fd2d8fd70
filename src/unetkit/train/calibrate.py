"""End of a run with ``infer.threshold: auto``: calibrate ``best.pt``'s decision threshold.

The network saved in ``best.pt`` predicts the calibration images the way ``unetkit predict``
will (``unetkit.infer.calibration``); the chosen threshold is written into that checkpoint's
``config.infer.threshold`` (and into ``last.pt`` when it holds the same weights), the details
into ``checkpoint["calibration"]`` and ``RUN/calibration.json``. Calibration images are the
validation cases when there are any, else the training cases (a short run does not overfit
them; a long run on few images may, and then a validation split is the better source).
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from unetkit.config import Config, apply_overrides
from unetkit.data.dataset import evenly_spaced
from unetkit.train.checkpoint import load_checkpoint, model_from_checkpoint
from unetkit.train.device import resolve_precision

if TYPE_CHECKING:
    from unetkit.train.setup import Run

log = logging.getLogger(__name__)


def wants_calibration(config: Config) -> bool:
    """True when the config asks for a calibrated threshold."""
    return config.infer.threshold == "auto"


def check_calibration(config: Config, labels: dict[int, str]) -> None:
    """Refuse ``threshold: auto`` before training when the data are not two-class."""
    if wants_calibration(config) and len(labels) != 2:
        raise ValueError(f"infer.threshold: auto needs two labels (background and one class); "
                         f"this data set has {len(labels)}: {sorted(labels)}")


def calibration_cases(run: Run) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """``(images, masks, source)``: validation cases, else training cases, evenly thinned."""
    data, limit = run.data, run.config.infer.calibration_images
    if data.val_images:
        images, masks, source = data.val_images, data.val_masks, "validation"
    else:
        images, masks, source = data.train_images, data.train_masks, "training"
    keep = evenly_spaced(len(images), limit)
    return [images[i] for i in keep], [masks[i] for i in keep], source


def calibration_estimate_s(run: Run, step_s: float) -> float:
    """Seconds to reserve for calibration, from the measured training step time.

    A forward pass costs about a third of a training step per pixel; counted at half a step per
    pixel over every calibration pixel and every mirrored copy (TTA), on the safe side.
    """
    if not wants_calibration(run.config):
        return 0.0
    images, _, _ = calibration_cases(run)
    pixels = sum(image[0].size for image in images) * 2 ** len(run.config.infer.tta_axes)
    per_step = math.prod(run.config.data.patch_size) * run.config.data.batch_size
    return 0.5 * step_s * pixels / per_step + 2.0


def calibrate_run(run: Run) -> dict[str, Any] | None:
    """Calibrate ``RUN/best.pt`` (rank 0); returns the calibration record or None if skipped."""
    if not wants_calibration(run.config) or not run.info.is_main or run.run_dir is None:
        return None
    best = run.run_dir / "best.pt"
    if not best.is_file():
        log.warning("calibration skipped: %s was not written", best)
        return None
    # infer builds on train: imported here, when a finished run needs it
    from unetkit.infer.calibration import PROBABILITIES_ONLY, calibrate_threshold, store_calibration
    from unetkit.infer.network import fuse_conv_bn, torch_network
    from unetkit.infer.predictor import Predictor

    checkpoint = load_checkpoint(best)
    config = run.config
    plan = resolve_precision(config.infer.precision, config.train.channels_last, run.device)
    model = model_from_checkpoint(checkpoint)
    predictor = Predictor(torch_network(fuse_conv_bn(model), plan, run.device),
                          # the run's arrays were aligned (image_offset) when loaded
                          config=apply_overrides(config, [*PROBABILITIES_ONLY,
                                                          "data.image_offset=null"]),
                          labels=run.data.labels, plan=plan, model=model)
    images, masks, source = calibration_cases(run)
    record = calibrate_threshold(predictor, images, masks, beta=config.infer.calibration_beta,
                                 source=source).as_dict()
    store_calibration(best, record)
    last = run.run_dir / "last.pt"
    if last.is_file() and load_checkpoint(last)["training"].get("step") == \
            checkpoint["training"].get("step"):
        store_calibration(last, record)
    (run.run_dir / "calibration.json").write_text(json.dumps(record, indent=2))
    return record


__all__ = ["calibrate_run", "calibration_cases", "calibration_estimate_s", "check_calibration"]
