"""Thin ``nn.Module`` wrappers around ``unetkit.losses.functional``, compound losses and
``build_loss``.

Every module is called as ``loss(logits, target) -> scalar`` with logits ``(B, C, *spatial)`` and
a target label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from unetkit.config import LossConfig
from unetkit.config.run_schema import BINARY_LOSSES
from unetkit.losses import functional as LF
from unetkit.losses.fused import DiceCEOptions, dice_ce
from unetkit.losses.skeleton import ClDiceLoss
from unetkit.losses.targets import check_labels, check_target_shape


class _WeightedLoss(nn.Module):
    """Holds optional class weights as a buffer so that ``.to(device)`` moves them."""

    def __init__(self, class_weights: Sequence[float] | None, ignore_index: int | None) -> None:
        super().__init__()
        weights = None
        if class_weights is not None:
            weights = torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.ignore_index = ignore_index


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy (softmax, ``C > 1``) or binary cross-entropy (sigmoid, ``C == 1``)."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar."""
        return LF.cross_entropy_loss(
            logits, target, class_weights=self.class_weights, ignore_index=self.ignore_index
        )


class FocalLoss(_WeightedLoss):
    """Focal loss ``-w_y (1 - p_y)^gamma log p_y``; ``gamma = 0`` is cross-entropy."""

    def __init__(
        self,
        gamma: float = 2.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(class_weights, ignore_index)
        self.gamma = gamma

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar."""
        return LF.focal_loss(
            logits,
            target,
            gamma=self.gamma,
            class_weights=self.class_weights,
            ignore_index=self.ignore_index,
        )


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - Dice`` (or soft Jaccard with ``jaccard=True``)."""

    def __init__(
        self,
        *,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        include_background: bool = False,
        squared_denominator: bool = False,
        ignore_index: int | None = None,
        jaccard: bool = False,
    ) -> None:
        super().__init__()
        self.options = {
            "smooth": smooth,
            "batch_dice": batch_dice,
            "include_background": include_background,
            "squared_denominator": squared_denominator,
            "ignore_index": ignore_index,
        }
        self.jaccard = jaccard

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar in [0, 1]."""
        function = LF.soft_jaccard_loss if self.jaccard else LF.soft_dice_loss
        return function(logits, target, **self.options)


class JaccardLoss(DiceLoss):
    """Soft Jaccard / IoU loss ``1 - IoU``; same options as ``DiceLoss``."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options, jaccard=True)  # type: ignore[arg-type]


class TverskyLoss(nn.Module):
    """Tversky loss; ``alpha`` weighs false positives, ``beta`` false negatives."""

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        include_background: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.options = {
            "alpha": alpha,
            "beta": beta,
            "smooth": smooth,
            "batch_dice": batch_dice,
            "include_background": include_background,
            "ignore_index": ignore_index,
        }

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar in [0, 1]."""
        return LF.tversky_loss(logits, target, **self.options)


class CompoundLoss(nn.Module):
    """Weighted sum of losses, e.g. Dice + CE as nnU-Net uses: ``sum_i w_i * loss_i``."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CompoundLoss needs at least one (weight, loss) term")
        self.weights = [float(weight) for weight, _ in terms]
        self.losses = nn.ModuleList([loss for _, loss in terms])

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar."""
        total = logits.new_zeros((), dtype=torch.float32)
        for weight, loss in zip(self.weights, self.losses, strict=True):
            if weight != 0:
                total = total + weight * loss(logits, target)
        return total


class DiceCELoss(CompoundLoss):
    """``dice_weight * Dice loss + ce_weight * (B)CE``, nnU-Net's loss, lean on label maps.

    The value and gradient are those of ``CompoundLoss([(dice_weight, dice), (ce_weight,
    ce)])``; for integer label maps they come from ``unetkit.losses.fused.dice_ce``, which keeps
    only the logits and the labels for backward. One-hot and soft targets take the compound
    path.
    """

    def __init__(self, dice: DiceLoss, ce: CrossEntropyLoss, dice_weight: float = 1.0,
                 ce_weight: float = 1.0) -> None:
        super().__init__([(dice_weight, dice), (ce_weight, ce)])
        if dice.jaccard:
            raise ValueError("DiceCELoss takes a Dice term, not a Jaccard one")
        self.fused = DiceCEOptions(dice_weight=float(dice_weight), ce_weight=float(ce_weight),
                                   **dice.options)  # type: ignore[arg-type]
        if dice.options["ignore_index"] != ce.ignore_index:
            raise ValueError("the Dice and CE terms must share one ignore_index")

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> float32 scalar."""
        labels = check_target_shape(logits, target)
        if labels is None or labels.is_floating_point():
            return super().forward(logits, target)
        check_labels(labels, logits.shape[1], self.fused.ignore_index)
        return dice_ce(logits, labels, self.fused, self.losses[1].class_weights)


def _region_options(config: LossConfig) -> dict[str, object]:
    return {
        "smooth": config.smooth,
        "batch_dice": config.batch_dice,
        "include_background": config.include_background,
        "ignore_index": config.ignore_index,
    }


def build_loss(config: LossConfig, num_channels: int) -> nn.Module:
    """Build the loss named by ``config.name`` for a network with ``num_channels`` outputs.

    Names: ``dice_ce`` (Dice + CE as nnU-Net; Dice + BCE when ``num_channels == 1``),
    ``dice_bce`` (binary only), ``ce`` (BCE when binary), ``bce`` (binary only), ``dice``,
    ``jaccard``, ``focal``, ``tversky``, ``cldice`` (centreline Dice) and ``cldice_bce`` (BCE +
    clDice, binary only). Compound weights are ``dice_weight``, ``ce_weight`` and
    ``cldice_weight``.

    Args:
        config: ``TrainConfig.loss``.
        num_channels: ``C`` of the logits; 1 means binary with a sigmoid.

    Returns:
        An ``nn.Module`` called as ``loss(logits, target) -> scalar``.

    Raises:
        ValueError: for binary-only losses with ``num_channels > 1`` or wrong class_weights.
    """
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1, got {num_channels}")
    name = config.name
    if name in BINARY_LOSSES and num_channels != 1:
        raise ValueError(
            f"train.loss.name={name!r} is for binary models (1 output channel), the model has "
            f"{num_channels}: use 'ce' or 'dice_ce'"
        )
    expected = 2 if num_channels == 1 else num_channels
    if config.class_weights is not None and len(config.class_weights) != expected:
        raise ValueError(
            f"train.loss.class_weights needs {expected} values for {num_channels} channel(s) "
            f"({'[background, foreground]' if num_channels == 1 else 'one per class'}), "
            f"got {len(config.class_weights)}"
        )
    region = _region_options(config)
    dice = DiceLoss(**region, squared_denominator=config.squared_denominator)
    ce = CrossEntropyLoss(config.class_weights, config.ignore_index)
    if name in ("dice_ce", "dice_bce"):
        return DiceCELoss(dice, ce, config.dice_weight, config.ce_weight)
    if name in ("ce", "bce"):
        return ce
    if name == "dice":
        return dice
    if name in ("cldice", "cldice_bce"):
        cldice = ClDiceLoss(config.cldice_iterations, config.smooth, config.include_background,
                            config.ignore_index)
        return cldice if name == "cldice" else CompoundLoss(
            [(config.ce_weight, ce), (config.cldice_weight, cldice)])
    if name == "jaccard":
        return JaccardLoss(**region, squared_denominator=config.squared_denominator)
    if name == "focal":
        return FocalLoss(config.focal_gamma, config.class_weights, config.ignore_index)
    if name == "tversky":
        return TverskyLoss(alpha=config.tversky_alpha, beta=config.tversky_beta, **region)
    raise ValueError(f"unknown train.loss.name {name!r}")
