"""Dice + cross-entropy in one autograd function that keeps only the logits and the labels.

The composite loss (``CompoundLoss`` of ``DiceLoss`` and ``CrossEntropyLoss``) lets autograd keep
float32 softmax probabilities, float32 log-probabilities, two float32 one-hot encodings and a
weight map: about ``(4 + 4 + 4 + 4) C + 4`` bytes a voxel. This function computes the same value
and gradient from the logits as the network returned them (bfloat16 under autocast) and the label
map stored in the smallest integer type that holds its values (uint8 for up to 255 classes and an
ignore label of 255): ``2 C + 1`` bytes a voxel, less than nnU-Net's loss keeps
(``benchmarks/memory_vs_nnunet.py``). The backward recomputes the probabilities (one softmax).

Shapes: ``logits (B, C, *spatial)``, ``labels (B, *spatial)`` integers; ``C == 1`` is binary
(sigmoid, binary cross-entropy, Dice of the single channel), ``C > 1`` softmax. Conventions are
those of ``unetkit.losses.functional`` (smooth, ``batch_dice``, ``include_background``,
``squared_denominator``, ``class_weights`` as a weighted mean, ``ignore_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class DiceCEOptions:
    """The options of one fused Dice + CE loss (weights of the two terms and their settings)."""

    dice_weight: float = 1.0
    ce_weight: float = 1.0
    smooth: float = 1e-5
    batch_dice: bool = False
    include_background: bool = False
    squared_denominator: bool = False
    ignore_index: int | None = None


def compact_labels(labels: Tensor, num_channels: int, ignore_index: int | None) -> Tensor:
    """``labels`` in the smallest integer dtype that holds ``[0, max(C, 2))`` and the ignore
    label (uint8 for up to 256 classes and an ignore label of 255), known without reading them."""
    low = min(0, ignore_index if ignore_index is not None else 0)
    high = max(max(num_channels, 2) - 1, ignore_index if ignore_index is not None else 0)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return labels.to(dtype)
    return labels.long()


def _probabilities(logits: Tensor) -> Tensor:
    z = logits.float()
    return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)


def _index(labels: Tensor, opts: DiceCEOptions) -> tuple[Tensor, Tensor | None]:
    """The labels as an int64 index ``(B, 1, *S)`` (0 where ignored) and the valid mask
    ``(B, 1, *S)`` float32 (None: every voxel counts)."""
    index = labels.long().unsqueeze(1)
    if opts.ignore_index is None:
        return index, None
    keep = index != opts.ignore_index
    return torch.where(keep, index, 0), keep.float()


def _per_class(values: Tensor, index: Tensor, classes: int) -> Tensor:
    """``out[b, c] = sum of values[b, 0, v]`` over the voxels ``v`` labelled ``c``: ``(B, C)``."""
    out = values.new_zeros(values.shape[0], classes)
    return out.scatter_add_(1, index.flatten(1), values.flatten(1))


def _dice_terms(p: Tensor, index: Tensor, valid: Tensor | None, opts: DiceCEOptions) -> tuple:
    """``(numerator, raw denominator, first channel)`` of the soft Dice scores, each ``(B, C')``
    (``(C',)`` with ``batch_dice``); no one-hot map is made."""
    channels = p.shape[1]
    at_label = p.gather(1, index) if channels > 1 else p * index  # binary: p where label is 1
    counts = torch.ones_like(at_label) if valid is None else valid
    if valid is not None:
        at_label = at_label * valid
    pm = p if valid is None else p * valid
    axes = tuple(range(2, p.ndim))
    pred = (pm * pm).sum(axes) if opts.squared_denominator else pm.sum(axes)
    if channels == 1:  # the single channel is the foreground
        tp, truth, first = at_label.sum(axes), (counts * index).sum(axes), 0
    else:
        first = 0 if opts.include_background else 1
        tp, truth = _per_class(at_label, index, channels), _per_class(counts, index, channels)
        tp, truth, pred = tp[:, first:], truth[:, first:], pred[:, first:]
    if opts.batch_dice:
        tp, truth, pred = tp.sum(0), truth.sum(0), pred.sum(0)
    return 2 * tp + opts.smooth, pred + truth + opts.smooth, first


def _ce_weights(index: Tensor, valid: Tensor | None, class_weights: Tensor | None,
                binary: bool) -> Tensor | None:
    """Per-voxel weights ``(B, 1, *S)`` of the weighted-mean cross-entropy (None: all 1)."""
    if class_weights is None:
        return valid
    if binary:  # [w_background, w_foreground]
        weights = class_weights[0] + (class_weights[1] - class_weights[0]) * index
    else:
        weights = class_weights[index]
    return weights if valid is None else weights * valid


def _ce_values(logits: Tensor, index: Tensor) -> Tensor:
    """Per-voxel cross-entropy ``(B, 1, *S)``: ``logsumexp(z) - z_y`` or binary CE."""
    z = logits.float()
    if z.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(z, index.float(), reduction="none")
    return torch.logsumexp(z, dim=1, keepdim=True) - z.gather(1, index)


class _DiceCE(torch.autograd.Function):
    """``dice_weight * (1 - mean Dice) + ce_weight * CE`` saving the logits and labels only."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, labels: Tensor, class_weights: Tensor | None,
                opts: DiceCEOptions) -> Tensor:
        index, valid = _index(labels, opts)
        total = logits.new_zeros((), dtype=torch.float32)
        ctx.dice = ctx.ce = None
        if opts.dice_weight != 0:
            num, den, first = _dice_terms(_probabilities(logits), index, valid, opts)
            total = total + opts.dice_weight * (1 - (num / den.clamp_min(1e-8)).mean())
            ctx.dice = (num, den, first)
        if opts.ce_weight != 0:
            weights = _ce_weights(index, valid, class_weights, logits.shape[1] == 1)
            values = _ce_values(logits, index)
            if weights is None:
                norm = torch.tensor(float(values.numel()), device=values.device)
                summed = values.sum()
            else:
                norm, summed = weights.sum().clamp_min(1e-12), (values * weights).sum()
            total = total + opts.ce_weight * summed / norm
            ctx.ce = norm
        ctx.opts = opts
        ctx.save_for_backward(logits, labels, class_weights)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        logits, labels, class_weights = ctx.saved_tensors
        opts: DiceCEOptions = ctx.opts
        index, valid = _index(labels, opts)
        p = _probabilities(logits)
        grad_z = torch.zeros_like(p)
        if ctx.dice is not None:
            _add_dice_grad(grad_z, p, index, valid, ctx.dice, opts)
        if ctx.ce is not None:
            weights = _ce_weights(index, valid, class_weights, p.shape[1] == 1)
            ones = torch.ones_like(p[:, :1]) if weights is None else weights
            _add_ce_grad(grad_z, p, index, ones * (opts.ce_weight / ctx.ce))
        return grad_z.mul_(grad).to(logits.dtype), None, None, None


def _add_dice_grad(out: Tensor, p: Tensor, index: Tensor, valid: Tensor | None, terms: tuple,
                   opts: DiceCEOptions) -> None:
    """Add ``dice_weight`` x the gradient of ``1 - mean Dice`` w.r.t. the logits to ``out``
    ``(B, C, *S)``; ``out`` is the only full-size buffer written."""
    num, den, first = terms
    count, clamped = num.numel(), den.clamp_min(1e-8)
    d_tp = -2.0 * opts.dice_weight / (count * clamped)
    d_pred = opts.dice_weight * num / (count * clamped * clamped) * (den >= 1e-8)
    rows, channels = (1 if opts.batch_dice else p.shape[0]), p.shape[1]
    full_tp = d_tp.new_zeros(rows, channels)
    full_pred = d_pred.new_zeros(rows, channels)
    full_tp[:, first:], full_pred[:, first:] = d_tp.view(rows, -1), d_pred.view(rows, -1)
    full_pred = full_pred.view(rows, channels, *(1,) * (p.ndim - 2))
    grad_p = out  # built in place: d(loss)/dp, then through the softmax / sigmoid
    if opts.squared_denominator:
        grad_p.add_(p if valid is None else p * valid).mul_(2 * full_pred)
    else:
        grad_p.add_(full_pred)
    if channels == 1:
        grad_p.addcmul_(index.float(), full_tp.view(rows, 1, *(1,) * (p.ndim - 2)))
    else:
        at_label = full_tp.expand(p.shape[0], channels).gather(1, index.flatten(1))
        grad_p.scatter_add_(1, index, at_label.view_as(index).to(p.dtype))
    if valid is not None:
        grad_p.mul_(valid)
    if channels == 1:
        grad_p.mul_(p * (1 - p))
        return
    dot = torch.zeros_like(p[:, :1])
    for c in range(channels):  # sum_c p_c g_c without a full-size product
        dot.addcmul_(p[:, c:c + 1], grad_p[:, c:c + 1])
    grad_p.sub_(dot).mul_(p)


def _add_ce_grad(out: Tensor, p: Tensor, index: Tensor, weights: Tensor) -> None:
    """Add ``weights * (p - onehot)`` (the weighted-mean CE's gradient; ``weights (B, 1, *S)``
    already divided by their sum) to ``out`` ``(B, C, *S)`` without a one-hot map."""
    out.addcmul_(p, weights)
    if p.shape[1] == 1:
        out.sub_(index.float() * weights)
    else:
        out.scatter_add_(1, index, -weights)


def dice_ce(logits: Tensor, labels: Tensor, opts: DiceCEOptions,
            class_weights: Tensor | None = None) -> Tensor:
    """Fused Dice + CE of ``logits (B, C, *S)`` and integer ``labels (B, *S)``; a float32 scalar.

    The labels must already be checked (values in ``[0, max(C, 2))`` or ``ignore_index``).
    Autograd keeps ``logits`` and the labels in ``compact_labels`` form, nothing else.
    """
    compact = compact_labels(labels, logits.shape[1], opts.ignore_index)
    return _DiceCE.apply(logits, compact, class_weights, opts)
