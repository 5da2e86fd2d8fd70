"""Validation as prediction: the training network through the predictor's own stages.

Each validation case (already preprocessed, as training loaded it) goes through
``Predictor.predict_logits`` (same window choice, TTA, precision and BatchNorm folding as
``unetkit predict``), ``decide`` and ``postprocess``, so the validation Dice is the Dice that
``unetkit predict`` + ``unetkit evaluate`` give on the same images (tested). Pixels labelled
``train.loss.ignore_index`` (outside a region of interest) count in neither the loss nor the Dice,
as ``unetkit evaluate --roi`` scores them. A region model (``data.regions``) is scored per region:
the region of the painted prediction against the region of the mask, as ``unetkit evaluate``
scores a data set that declares regions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from unetkit.config import Config
from unetkit.infer.postprocess import keep_largest_component
from unetkit.infer.predictor import Predictor
from unetkit.losses.targets import unchecked_labels
from unetkit.metrics import case_metrics
from unetkit.metrics.regions import region_case_metrics
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.network import fuse_conv_bn, torch_network
from unetkit.train.state import unwrap


def mean_dice(per_case: list[dict[int, dict[str, float]]], labels: list[int]) -> dict[str, float]:
    """Per-class Dice averaged over cases (NaN-aware) and their mean over classes.

    Returns:
        ``{"dice_<label>": value, ..., "val_dice": mean over classes}``; NaN where undefined.
    """
    out: dict[str, float] = {}
    for label in labels:
        values = [case[label]["dice"] for case in per_case if label in case]
        finite = [v for v in values if not math.isnan(v)]
        out[f"dice_{label}"] = float(np.mean(finite)) if finite else math.nan
    per_class = [out[f"dice_{label}"] for label in labels if not math.isnan(out[f"dice_{label}"])]
    out["val_dice"] = float(np.mean(per_class)) if per_class else math.nan
    return out


def scored_pixels(classes: np.ndarray, mask: np.ndarray, ignore_index: int | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and mask with background where the mask holds ``ignore_index``, so that
    ignored pixels are neither true nor false positives (unchanged when None)."""
    if ignore_index is None:
        return classes, mask
    ignored = mask == ignore_index
    return np.where(ignored, 0, classes), np.where(ignored, 0, mask)


def case_dice(classes: np.ndarray, mask: np.ndarray, config: Config, foreground: list[int]
              ) -> dict[int, dict[str, float]]:
    """``{k: {"dice": value}}`` of one decided case: per foreground label, or per region
    ``k = 1..R`` for a region model; ignored pixels (``train.loss.ignore_index``) left out."""
    ignore = config.train.loss.ignore_index
    if config.data.regions:  # an ignored pixel is off in every region of both maps
        return region_case_metrics(classes, mask, [r.labels for r in config.data.regions],
                                   metrics=("dice",),
                                   scored=None if ignore is None else mask != ignore)
    return case_metrics(*scored_pixels(classes, mask, ignore), foreground, metrics=("dice",))


def case_loss(loss_fn: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor
              ) -> torch.Tensor:
    """The loss of one case's logits ``(1, C, *S)`` against ``target`` ``(1, *S)``, a 0-d
    tensor on their device, not read back (``mean_loss`` reads them all at once); no label-range
    check: the masks' values were mapped to labels when the data were loaded."""
    with unchecked_labels():
        return loss_fn(logits, target).detach()


def mean_loss(losses: list[torch.Tensor]) -> float:
    """Mean of the cases' losses (one read-back; NaN without cases)."""
    return float(torch.stack(losses).cpu().double().mean()) if losses else math.nan


def live_predictor(model: torch.nn.Module, config: Config, labels: dict[int, str],
                   device: torch.device, plan: PrecisionPlan) -> Predictor:
    """A predictor over a copy of the training network (eval mode, BatchNorm folded)."""
    inference = config.model_copy(update={"infer": config.infer.model_copy(
        update={"threshold": None if config.infer.threshold == "auto"
                else config.infer.threshold})})
    network = torch_network(fuse_conv_bn(unwrap(model)), plan, device)
    return Predictor(network, config=inference, labels=labels, plan=plan, device=device)


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    loss_fn: torch.nn.Module,
    config: Config,
    device: torch.device,
    plan: PrecisionPlan,
    labels: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Mean loss and Dice of ``model`` over whole validation images.

    Args:
        model: the network (a DDP wrapper is unwrapped); it is copied, never switched to eval.
        images: preprocessed images, each ``(C, *spatial)`` float32.
        masks: label maps, each ``(*spatial)`` int64 with values 0..K-1 (or
            ``config.train.loss.ignore_index`` where a pixel is not scored).
        loss_fn: loss on full-resolution logits (no deep-supervision wrapper).
        config: the run's config (``infer`` settings as ``unetkit predict`` will use them).
        device: where the network lives.
        plan: precision and memory format of the network.
        labels: ``{index: name}`` of the classes (default: one per output channel, or the
            labels painted by a region model).

    Returns:
        ``{"val_loss": float, "val_dice": float, "dice_<label>": float, ...}``, foreground only
        (a region model: ``dice_<k>`` of region ``k = 1..R``);
        with ``infer.postprocess.keep_largest: auto`` also ``val_dice_largest``, the mean Dice
        with only the largest component of each class kept (``unetkit.train.postprocessing``).
    """
    channels = max(unwrap(model).out_channels, 2)
    order = config.data.regions_class_order if config.data.regions else None
    classes = range(max(order) + 1) if order else range(channels)
    labels = labels or {i: str(i) for i in classes}
    predictor = live_predictor(model, config, labels, device, plan)
    foreground = list(range(1, len(config.data.regions) + 1 if order else channels))
    choose_largest = config.infer.postprocess.keep_largest == "auto"
    losses, per_case, per_case_largest = [], [], []
    for image, mask in zip(images, masks, strict=True):
        # on ``device``, unless memory ran out there and the windows were blended on the CPU
        logits = predictor.predict_logits(torch.from_numpy(image).to(device)).to(device)
        target = torch.from_numpy(mask)[None].to(device)
        losses.append(case_loss(loss_fn, logits[None], target))
        decided = predictor.postprocess(predictor.decide(logits))
        per_case.append(case_dice(decided, mask, config, foreground))
        if choose_largest:  # the same map with only the largest component of each class
            per_case_largest.append(case_dice(keep_largest_component(decided), mask, config,
                                              foreground))
    out = {"val_loss": mean_loss(losses), **mean_dice(per_case, foreground)}
    if choose_largest:
        out["val_dice_largest"] = mean_dice(per_case_largest, foreground)["val_dice"]
    return out
