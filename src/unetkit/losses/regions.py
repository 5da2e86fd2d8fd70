"""Region losses (nnU-Net's region-based training): one sigmoid output per region, binary
cross-entropy + soft Dice on each region's membership map.

Shapes: ``logits`` ``(B, R, *spatial)``, one channel per region, no background channel.
``target`` is the integer label map ``(B, *spatial)`` / ``(B, 1, *spatial)``, turned into region
maps ``(B, R, *spatial)`` here (region ``r`` is on where the label is one of ``regions[r]``), or
float region maps ``(B, R, *spatial)`` given as they are. Regions overlap, so unlike a softmax no
channel competes with another: each is its own binary problem.

* BCE: the mean over regions and counted pixels of ``BCE(sigmoid(l_r), g_r)``.
* Dice: ``1 - mean_r (2 tp_r + smooth) / (sum p_r + sum g_r + smooth)`` with ``p = sigmoid(l)``;
  every region counts (there is no background to leave out); ``batch_dice`` sums the statistics
  over the batch first, as the other Dice losses do.
* ``ignore_index``: pixels with that label count in neither term, for every region. Training
  passes ``train.loss.ignore_index``: 255 where the masks hold the ignore label (sparse
  annotations, ``unetkit.data.ignore``) or lie outside a region of interest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.config import LossConfig
from unetkit.losses.targets import Target

REGION_LOSSES = ("dice_ce", "dice_bce", "dice", "ce", "bce")  # the names with a region form


def region_targets(logits: Tensor, target: Tensor, regions: Sequence[Sequence[int]],
                   ignore_index: int | None = None) -> Target:
    """Region membership maps of a label map (or float region maps as they are).

    Args:
        logits: ``(B, R, *spatial)``; only its shape is used.
        target: integer labels ``(B, *spatial)`` / ``(B, 1, *spatial)``, or float region maps
            ``(B, R, *spatial)`` in [0, 1].
        regions: the label values of each region, ``R`` lists.
        ignore_index: label whose pixels count in no region (label maps only).

    Returns:
        ``Target`` with ``onehot`` ``(B, R, *spatial)`` float32 (0 at ignored pixels), ``valid``
        ``(B, 1, *spatial)`` float32 or None, ``labels`` the label map (None for region maps).

    Raises:
        ValueError: ``R`` is not the number of regions, or the shapes do not match.
    """
    count, spatial = logits.shape[1], logits.shape[2:]
    if count != len(regions):
        raise ValueError(f"a region loss for {len(regions)} regions got logits with {count} "
                         "channels (one per region)")
    if target.is_floating_point() and target.ndim == logits.ndim and target.shape[1] == count:
        if target.shape != logits.shape:
            raise ValueError(f"region maps {tuple(target.shape)} do not match the logits "
                             f"{tuple(logits.shape)}")
        return Target(onehot=target.float(), valid=None, labels=None)
    labels = target[:, 0] if target.ndim == logits.ndim and target.shape[1] == 1 else target
    if labels.shape != (logits.shape[0], *spatial):
        raise ValueError(f"target {tuple(target.shape)} is not a label map (B, *spatial) of the "
                         f"logits {tuple(logits.shape)}")
    labels = labels.long()
    maps = torch.stack([_member(labels, values) for values in regions], dim=1).float()
    if ignore_index is None:
        return Target(onehot=maps, valid=None, labels=labels)
    valid = (labels != ignore_index).unsqueeze(1).float()
    return Target(onehot=maps * valid, valid=valid, labels=labels)


def _member(labels: Tensor, values: Sequence[int]) -> Tensor:
    """``(B, *spatial)`` bool: the label is one of ``values``. Comparisons with Python ints,
    so no tensor is copied to the device per call (a CUDA graph can capture the step)."""
    member = labels == int(values[0])
    for value in values[1:]:
        member = member | (labels == int(value))
    return member


def _bce(logits: Tensor, target: Target) -> Tensor:
    values = F.binary_cross_entropy_with_logits(logits.float(), target.onehot, reduction="none")
    if target.valid is None:
        return values.mean()
    weights = target.valid.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


def _dice(logits: Tensor, target: Target, smooth: float, batch_dice: bool,
          squared: bool) -> Tensor:
    probs = torch.sigmoid(logits.float())
    if target.valid is not None:
        probs = probs * target.valid
    axes = tuple(range(0 if batch_dice else 2, probs.ndim))
    axes = tuple(a for a in axes if a != 1)
    truth = target.onehot
    tp = (probs * truth).sum(axes)
    mass = (probs * probs).sum(axes) + (truth * truth).sum(axes) if squared else (
        probs.sum(axes) + truth.sum(axes))
    return 1 - ((2 * tp + smooth) / (mass + smooth).clamp_min(1e-8)).mean()


def region_bce_loss(logits: Tensor, target: Tensor, regions: Sequence[Sequence[int]], *,
                    ignore_index: int | None = None) -> Tensor:
    """Binary cross-entropy per region, averaged over regions and counted pixels (module
    docstring); ``logits (B, R, *spatial)`` -> scalar."""
    return _bce(logits, region_targets(logits, target, regions, ignore_index))


def region_dice_loss(logits: Tensor, target: Tensor, regions: Sequence[Sequence[int]], *,
                     smooth: float = 1e-5, batch_dice: bool = False,
                     squared_denominator: bool = False, ignore_index: int | None = None
                     ) -> Tensor:
    """Soft Dice loss per region on sigmoid probabilities, ``1 - mean_r Dice_r`` (module
    docstring); ``logits (B, R, *spatial)`` -> scalar in [0, 1]."""
    prepared = region_targets(logits, target, regions, ignore_index)
    return _dice(logits, prepared, smooth, batch_dice, squared_denominator)


class RegionLoss(nn.Module):
    """``bce_weight * BCE + dice_weight * (1 - Dice)`` over regions; the region maps are built
    once per call for both terms."""

    def __init__(self, regions: Sequence[Sequence[int]], *, bce_weight: float = 1.0,
                 dice_weight: float = 1.0, smooth: float = 1e-5, batch_dice: bool = False,
                 squared_denominator: bool = False, ignore_index: int | None = None) -> None:
        super().__init__()
        self.regions = [[int(v) for v in values] for values in regions]
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)
        self.dice_options = (smooth, batch_dice, squared_denominator)
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, R, *spatial)``, ``target`` labels or region maps -> scalar."""
        prepared = region_targets(logits, target, self.regions, self.ignore_index)
        total = logits.new_zeros((), dtype=torch.float32)
        if self.bce_weight:
            total = total + self.bce_weight * _bce(logits, prepared)
        if self.dice_weight:
            total = total + self.dice_weight * _dice(logits, prepared, *self.dice_options)
        return total


def build_region_loss(config: LossConfig, regions: Sequence[Sequence[int]]) -> RegionLoss:
    """The loss of a region model: ``dice_ce`` / ``dice_bce`` are BCE + Dice per region
    (weights ``ce_weight``, ``dice_weight``), ``ce`` / ``bce`` BCE alone, ``dice`` Dice alone.

    Raises:
        ValueError: a loss without a region form, or class weights (a region model has no
            classes to weigh).
    """
    if config.name not in REGION_LOSSES:
        raise ValueError(f"train.loss.name={config.name!r} has no region form; region models "
                         f"train with one of {', '.join(REGION_LOSSES)} (BCE and/or Dice per "
                         "region)")
    if config.class_weights is not None:
        raise ValueError("train.loss.class_weights weigh classes; a region model has one "
                         "sigmoid output per region and no classes: leave it unset")
    bce = 0.0 if config.name == "dice" else config.ce_weight if config.name.startswith(
        "dice_") else 1.0
    dice = 0.0 if config.name in ("ce", "bce") else config.dice_weight
    return RegionLoss(regions, bce_weight=bce, dice_weight=dice, smooth=config.smooth,
                      batch_dice=config.batch_dice,
                      squared_denominator=config.squared_denominator,
                      ignore_index=config.ignore_index)
