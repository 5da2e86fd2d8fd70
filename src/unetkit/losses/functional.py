"""Loss functions: pure functions of ``(logits, target)`` returning a scalar tensor.

Shapes: ``logits`` is ``(B, C, *spatial)`` (2D or 3D); ``C == 1`` means binary with a sigmoid,
``C > 1`` means ``C`` mutually exclusive classes with a softmax. ``target`` is a label map
``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``
(see ``unetkit.losses.targets``). Every loss casts logits to float32 first, so it is stable under
bf16/fp16 autocast.

Conventions:

* Region losses (Dice, Jaccard, Tversky) return ``1 - score``, so a perfect prediction gives 0.
  ``score = (numerator + smooth) / (denominator + smooth)``; an empty target with an empty
  prediction therefore scores 1 (loss 0), and the gradient stays finite.
* ``batch_dice=False`` computes one score per (sample, class) and averages them;
  ``batch_dice=True`` (nnU-Net's default for 3D) sums the statistics over the batch first, i.e.
  treats the batch as one large image.
* ``include_background`` drops channel 0 when False and ``C > 1``; with ``C == 1`` the single
  channel is the foreground and is always used.
* ``ignore_index`` pixels (label maps only) contribute nothing to any loss or gradient.
* Cross-entropy with class weights follows ``torch.nn.functional.cross_entropy``: a weighted mean
  ``sum(w_y * nll) / sum(w_y)`` for label maps. Binary class weights are ``[w_background,
  w_foreground]`` and use the same weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from unetkit.losses.targets import Target, prepare_target, probabilities


def _weights_tensor(
    class_weights: Sequence[float] | Tensor | None, count: int, ref: Tensor
) -> Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32, device=ref.device)
    if weights.shape != (count,):
        raise ValueError(
            f"class_weights needs {count} values (one per class"
            f"{', [background, foreground] for binary' if count == 2 else ''}), "
            f"got {tuple(weights.shape)}"
        )
    return weights


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """``sum(w * v) / sum(w)``; 0 (with a graph) when every weight is 0."""
    total = weights.sum()
    return (values * weights).sum() / total.clamp_min(1e-12)


def _region_stats(
    logits: Tensor, target: Target, batch_dice: bool, include_background: bool, squared: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft true positives and the two mass terms, summed over spatial (and batch) axes.

    Returns:
        ``(tp, pred_mass, target_mass)``, each ``(C',)`` if ``batch_dice`` else ``(B, C')``,
        where ``C'`` excludes the background channel when asked to. ``pred_mass`` is
        ``sum p`` (or ``sum p^2`` with ``squared``), likewise ``target_mass``.
    """
    probs = probabilities(logits)
    onehot = target.onehot
    if target.valid is not None:
        probs = probs * target.valid
    if not include_background and probs.shape[1] > 1:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    axes = tuple(range(2, probs.ndim))
    if batch_dice:
        axes = (0, *axes)
    tp = (probs * onehot).sum(axes)
    if squared:
        return tp, (probs * probs).sum(axes), (onehot * onehot).sum(axes)
    return tp, probs.sum(axes), onehot.sum(axes)


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1e-5,
    batch_dice: bool = False,
    include_background: bool = False,
    squared_denominator: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    """Soft Dice loss ``1 - mean((2 tp + smooth) / (sum p + sum g + smooth))``.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, *spatial)`` / ``(B, 1, *spatial)`` labels or ``(B, C, *spatial)`` one-hot.
        smooth: added to numerator and denominator.
        batch_dice: sum statistics over the batch before dividing (see module docstring).
        include_background: keep channel 0 when ``C > 1``.
        squared_denominator: use ``sum p^2 + sum g^2`` in the denominator (V-Net).
        ignore_index: label value whose pixels are excluded.

    Returns:
        Scalar tensor in ``[0, 1]``.
    """
    prepared = prepare_target(logits, target, ignore_index)
    tp, pred, ref = _region_stats(
        logits, prepared, batch_dice, include_background, squared_denominator
    )
    score = (2 * tp + smooth) / (pred + ref + smooth).clamp_min(1e-8)
    return 1 - score.mean()


def soft_jaccard_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1e-5,
    batch_dice: bool = False,
    include_background: bool = False,
    squared_denominator: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    """Soft Jaccard (IoU) loss ``1 - mean((tp + smooth) / (sum p + sum g - tp + smooth))``.

    Args and returns as ``soft_dice_loss``.
    """
    prepared = prepare_target(logits, target, ignore_index)
    tp, pred, ref = _region_stats(
        logits, prepared, batch_dice, include_background, squared_denominator
    )
    score = (tp + smooth) / (pred + ref - tp + smooth).clamp_min(1e-8)
    return 1 - score.mean()


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1e-5,
    batch_dice: bool = False,
    include_background: bool = False,
    ignore_index: int | None = None,
) -> Tensor:
    """Tversky loss ``1 - mean((tp + smooth) / (tp + alpha fp + beta fn + smooth))``.

    ``alpha`` weighs false positives and ``beta`` false negatives; ``alpha = beta = 0.5`` is the
    soft Dice loss. Other args and returns as ``soft_dice_loss``.
    """
    prepared = prepare_target(logits, target, ignore_index)
    tp, pred, ref = _region_stats(logits, prepared, batch_dice, include_background, False)
    fp, fn = pred - tp, ref - tp
    score = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(1e-8)
    return 1 - score.mean()


def _binary_focal_map(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """Per-pixel binary focal term; equals binary cross-entropy when ``gamma == 0``."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma == 0:
        return bce
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    return (1 - p_t).pow(gamma) * bce


def _binary_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float,
    class_weights: Sequence[float] | Tensor | None,
    ignore_index: int | None,
) -> Tensor:
    if logits.shape[1] != 1:
        raise ValueError(f"binary losses need logits with 1 channel, got {logits.shape[1]}")
    prepared = prepare_target(logits, target, ignore_index)
    logits = logits.float()
    values = _binary_focal_map(logits, prepared.onehot, gamma)
    weights = torch.ones_like(values) if prepared.valid is None else prepared.valid.clone()
    class_w = _weights_tensor(class_weights, 2, logits)
    if class_w is not None:
        weights = weights * (class_w[0] + (class_w[1] - class_w[0]) * prepared.onehot)
    return _weighted_mean(values, weights)


def bce_with_logits_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Binary cross-entropy on sigmoid logits, mean over non-ignored pixels.

    Args:
        logits: ``(B, 1, *spatial)``.
        target: ``(B, *spatial)`` / ``(B, 1, *spatial)`` labels {0, 1} or floats in [0, 1].
        class_weights: ``[w_background, w_foreground]``; the mean is weighted by them.
        ignore_index: label value whose pixels are excluded.

    Returns:
        Scalar tensor.
    """
    return _binary_loss(logits, target, 0.0, class_weights, ignore_index)


def _multiclass_focal(
    logits: Tensor,
    target: Tensor,
    gamma: float,
    class_weights: Sequence[float] | Tensor | None,
    ignore_index: int | None,
) -> Tensor:
    prepared = prepare_target(logits, target, ignore_index)
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=1)
    focal = log_p if gamma == 0 else (1 - log_p.exp()).pow(gamma) * log_p
    class_w = _weights_tensor(class_weights, logits.shape[1], logits)
    shape = (1, -1) + (1,) * (logits.ndim - 2)
    per_class_w = 1.0 if class_w is None else class_w.view(shape)
    if prepared.labels is None:
        # Soft targets: mean over pixels of -sum_c w_c t_c (1 - p_c)^gamma log p_c, as torch does
        return -(per_class_w * prepared.onehot * focal).sum(1).mean()
    # One-hot from labels: the sum picks the target class y; weight w_y (0 where ignored)
    values = -(prepared.onehot * focal).sum(1)
    weights = (per_class_w * prepared.onehot).sum(1)
    return _weighted_mean(values, weights)


def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Cross-entropy; binary cross-entropy when ``C == 1``.

    Matches ``torch.nn.functional.cross_entropy``: label maps give ``sum(w_y nll) / sum(w_y)``
    over non-ignored pixels; one-hot/soft targets give the mean over pixels of
    ``-sum_c w_c t_c log p_c``.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, *spatial)`` / ``(B, 1, *spatial)`` labels or ``(B, C, *spatial)`` one-hot.
        class_weights: one weight per class (``[bg, fg]`` when ``C == 1``).
        ignore_index: label value whose pixels are excluded.

    Returns:
        Scalar tensor.
    """
    if logits.shape[1] == 1:
        return _binary_loss(logits, target, 0.0, class_weights, ignore_index)
    return _multiclass_focal(logits, target, 0.0, class_weights, ignore_index)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    class_weights: Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Focal loss ``-w_y (1 - p_y)^gamma log p_y`` (Lin et al.), sigmoid or softmax by ``C``.

    Reduced like ``cross_entropy_loss``, which it equals for ``gamma == 0``; ``class_weights``
    play the role of the focal ``alpha``.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, *spatial)`` / ``(B, 1, *spatial)`` labels or ``(B, C, *spatial)`` one-hot.
        gamma: focusing exponent (>= 0).
        class_weights: one weight per class (``[bg, fg]`` when ``C == 1``).
        ignore_index: label value whose pixels are excluded.

    Returns:
        Scalar tensor.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    if logits.shape[1] == 1:
        return _binary_loss(logits, target, gamma, class_weights, ignore_index)
    return _multiclass_focal(logits, target, gamma, class_weights, ignore_index)
