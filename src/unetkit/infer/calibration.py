"""``infer.threshold: auto``: the decision threshold of a two-class model, chosen on images.

A short training run ends with a network whose probabilities are well ordered but not well
calibrated: on ISBI 2012 two 8-minute runs of the same configuration had their best membrane
threshold at 0.3 and at 0.55, and a fixed threshold cost one of them 0.02 to 0.04 Dice. The
calibration predicts the calibration images exactly as ``unetkit predict`` will (whole image,
mirroring TTA), and keeps the threshold with the best mean F-beta
(``unetkit.metrics.threshold``). Training stores the result in the checkpoint, so prediction,
export and evaluation use it without further settings. Only pixels inside the regions of
interest count: masks carry ``ignore_index`` outside them, as in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.infer.decision import foreground_probability
from unetkit.infer.predictor import Predictor
from unetkit.metrics.threshold import DEFAULT_THRESHOLDS, best_threshold

log = logging.getLogger(__name__)


@dataclass
class Calibration:
    """A chosen threshold and how it was chosen (stored as ``checkpoint["calibration"]``)."""

    threshold: float
    score: float  # mean F-beta at the threshold over the calibration images
    beta: float
    images: int
    source: str  # "validation" or "training" cases
    curve: dict[str, float] = field(default_factory=dict)  # threshold -> mean F-beta

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        return asdict(self)


def foreground_probabilities(predictor: Predictor, images: Sequence[np.ndarray],
                             preprocessed: bool = False) -> list[np.ndarray]:
    """Foreground probability ``(*spatial)`` of each image as ``predictor`` computes it.

    Args:
        predictor: a two-class predictor.
        images: raw ``(C, *spatial)`` images, or network inputs when ``preprocessed``
            (training's arrays): then only ``predict_logits`` runs.
        preprocessed: the images went through the predictor's preprocessing already.
    """
    if len(predictor.labels) != 2 or predictor.region_order is not None:
        raise ValueError(f"threshold calibration needs a two-class model; this one has "
                         f"{len(predictor.labels)} labels"
                         + (" and regions, each decided at 0.5" if predictor.region_order
                            is not None else ""))
    maps = []
    for image in images:
        if preprocessed:
            logits = predictor.predict_logits(image)
        else:
            x, record = predictor.preprocess(image)
            logits = predictor.restore(predictor.predict_logits(x), record)
        maps.append(foreground_probability(logits).cpu().numpy())
    return maps


def check_beta(beta: float) -> None:
    """Refuse a beta F-beta is not defined for (0, negative, NaN, infinite)."""
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta {beta:g}: F-beta needs a positive beta (1 = F1, i.e. Dice)")


def calibrate_threshold(predictor: Predictor, images: Sequence[np.ndarray],
                        masks: Sequence[np.ndarray], *, beta: float = 1.0, source: str = "training",
                        thresholds: np.ndarray = DEFAULT_THRESHOLDS,
                        preprocessed: bool = False, ignore_index: int | None = None
                        ) -> Calibration:
    """The threshold with the best mean F-beta of ``predictor`` over ``images``.

    Args:
        predictor: a two-class predictor (its own threshold and post-processing are not used).
        images: raw ``(C, *spatial)`` images, or network inputs when ``preprocessed``.
        masks: ``(*spatial)`` label maps; foreground = label 1 (nonzero and not
            ``ignore_index``).
        beta: F-beta's beta (1: Dice).
        source: where the images come from, for the record.
        thresholds: the increasing grid searched.
        preprocessed: see ``foreground_probabilities``.
        ignore_index: the mask label of pixels that do not count (outside a region of
            interest); None: every pixel counts.
    """
    if len(images) != len(masks) or not images:
        raise ValueError("threshold calibration needs at least one image and one mask per image")
    check_beta(beta)
    maps = foreground_probabilities(predictor, images, preprocessed)
    masks = [np.asarray(mask) for mask in masks]
    valids = None if ignore_index is None else [mask != ignore_index for mask in masks]
    truths = [(mask != 0) if ignore_index is None else (mask != 0) & (mask != ignore_index)
              for mask in masks]
    threshold, score, curve = best_threshold(maps, truths, thresholds, beta, valids)
    log.info("calibration: threshold %.2f (mean F%.2g %.4f on %d %s images; 0.50: %.4f)",
             threshold, beta, score, len(images), source,
             _at(curve, thresholds, 0.5))
    return Calibration(
        threshold=threshold, score=score, beta=beta, images=len(images), source=source,
        curve={f"{t:.2f}": round(float(v), 5) for t, v in zip(thresholds, curve, strict=True)
               if np.isfinite(v)},
    )


def store_calibration(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` into the checkpoint at ``path``: ``checkpoint["calibration"]`` and its
    threshold into ``config.infer.threshold`` (so every later prediction uses it)."""
    from unetkit.runtime.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(path)
    checkpoint["calibration"] = record
    checkpoint["config"]["infer"]["threshold"] = record["threshold"]
    save_checkpoint(checkpoint, path)


def calibrate_checkpoint(path: str | Path, data_dir: str | Path, *, beta: float | None = None,
                         max_images: int | None = None, device: str = "auto") -> Calibration:
    """Calibrate a trained checkpoint on a labelled folder and store the result in it.

    ``beta`` and ``max_images`` default to the checkpoint's ``infer.calibration_beta`` /
    ``calibration_images``; the folder is read as ``unetkit.data`` reads training data, its
    regions of interest (``roi/``, ``fov/`` or the checkpoint's relative ``data.roi_dir``)
    and ignore label (``data.ignore_label`` or dataset.json's ``ignore``) included.
    """
    from unetkit.data.dataset import discover_cases, evenly_spaced, load_case, read_dataset_json
    from unetkit.data.ignore import IGNORE, ignore_value, mark_ignored, split_ignored, unscaled
    from unetkit.data.roi import load_roi, mark_outside
    from unetkit.runtime.checkpoint import resolve_checkpoint_path

    path = resolve_checkpoint_path(path)
    if beta is not None:  # refused before the model is loaded, never replaced by the default
        check_beta(beta)
    if max_images is not None and max_images < 1:
        raise ValueError(f"--max-images {max_images}: calibration needs at least 1 image "
                         f"(nothing written to {path})")
    check_rewritable(path)
    # the stored threshold is what is being replaced: not resolved (nor warned about) here
    predictor = Predictor.from_checkpoint(path, overrides=["infer.threshold=null"],
                                          device=device)
    infer = predictor.infer
    roi_dir = predictor.config.data.roi_dir  # one relative to the data folder applies here too
    cases = discover_cases(data_dir, require_masks=False,
                           roi_dir=roi_dir if roi_dir and not roi_dir.is_absolute() else None)
    unlabelled = [case.image_paths[0] for case in cases if case.mask_path is None]
    if unlabelled:
        more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
        raise ValueError(f"{unlabelled[0]}{more}: image without a mask; calibration needs a "
                         f"mask for every image of {data_dir} (nothing written to {path})")
    if not cases:
        raise ValueError(f"{data_dir}: no image/mask pairs to calibrate on")
    chosen = [cases[i] for i in evenly_spaced(len(cases), max_images or infer.calibration_images)]
    images, masks = [], []
    sparse = ignore_value(predictor.config.data.ignore_label, read_dataset_json(data_dir)[0])
    for case in chosen:
        image, mask, _ = load_case(case)
        images.append(image)
        mask, ignored = split_ignored(unscaled(mask, case.mask_path, sparse), sparse)
        masks.append(mark_ignored(mark_outside(mask, load_roi(case, mask.shape)), ignored))
    ignore = IGNORE if any(case.roi_path for case in chosen) or sparse is not None else None
    result = calibrate_threshold(predictor, images, masks,
                                 beta=infer.calibration_beta if beta is None else beta,
                                 source=str(data_dir), ignore_index=ignore)
    store_calibration(path, result.as_dict())
    return result


def check_rewritable(path: Path) -> None:
    """``path`` can be replaced: its folder takes a new file (the atomic write's temporary
    one) and the file itself is not write-protected (a user who made it read-only meant it).

    Raises:
        OutputError: one line naming the checkpoint; checked before any work.
    """
    import os

    from unetkit.runtime.outputs import OutputError, folder_problem

    problem = folder_problem(path.parent)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = "the file is read-only"
    if problem is not None:
        raise OutputError(f"{path}: cannot store the calibration in this checkpoint "
                          f"({problem}); copy it somewhere writable (nothing written)")


def _at(curve: np.ndarray, thresholds: np.ndarray, value: float) -> float:
    index = int(np.argmin(np.abs(np.asarray(thresholds) - value)))
    return float(curve[index])
