"""Deep supervision: a weighted sum of one loss over outputs at decreasing resolution.

Targets are given at full resolution and down-sampled to each output's size (nearest sampling by
default, or max-pooling of the one-hot encoding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def default_deep_supervision_weights(count: int) -> list[float]:
    """nnU-Net's weights ``1, 1/2, 1/4, ...`` normalised to sum to 1 (full resolution first).

    Unlike nnU-Net, the lowest-resolution output is not given weight 0: unetkit models return
    only the outputs meant to be supervised.
    """
    raw = [0.5**i for i in range(count)]
    return [w / sum(raw) for w in raw]


def downsample_target(
    target: Tensor, size: Sequence[int], num_channels: int, mode: str = "nearest"
) -> Tensor:
    """Resize a target to ``size`` for a lower-resolution deep-supervision output.

    Args:
        target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
        size: the output's spatial size.
        num_channels: ``C`` of the logits (to one-hot label maps in ``"maxpool"`` mode).
        mode: ``"nearest"`` keeps the form of the target (labels stay labels; the sample at
            index ``floor(i * in / out)`` is taken); ``"maxpool"`` one-hot encodes label maps and
            max-pools each class over its window, so thin structures survive (a pixel may then be
            positive for several classes).

    Returns:
        The target at ``size``: same form in ``"nearest"`` mode, ``(B, C, *size)`` float in
        ``"maxpool"`` mode.
    """
    size = tuple(int(s) for s in size)
    spatial = len(size)
    is_labels = target.ndim == spatial + 1
    if tuple(target.shape[-spatial:]) == size:
        return target
    if mode == "nearest":
        batched = target.unsqueeze(1) if is_labels else target
        small = F.interpolate(batched.float(), size=size, mode="nearest").to(target.dtype)
        return small.squeeze(1) if is_labels else small
    if mode != "maxpool":
        raise ValueError(f"target downsampling mode must be 'nearest' or 'maxpool', got {mode!r}")
    if is_labels or (target.shape[1] == 1 and num_channels > 1):
        labels = target if is_labels else target[:, 0]
        if labels.numel() and (labels.min() < 0 or labels.max() >= max(num_channels, 2)):
            raise ValueError(
                "target_mode='maxpool' needs labels in [0, C) and cannot carry an ignore label; "
                "use target_mode='nearest'"
            )
        if num_channels == 1:
            target = labels.unsqueeze(1).float()
        else:
            target = F.one_hot(labels.long(), num_channels).movedim(-1, 1).float()
    pool = F.adaptive_max_pool2d if spatial == 2 else F.adaptive_max_pool3d
    return pool(target.float(), size)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of one loss over deep-supervision outputs.

    Args:
        loss: the per-scale loss module.
        weights: one weight per output (full resolution first), used as given; None uses
            ``default_deep_supervision_weights`` (``1, 1/2, 1/4, ...`` normalised).
        target_mode: ``"nearest"`` (default) or ``"maxpool"``, see ``downsample_target``.
            ``"maxpool"`` cannot be combined with an ignore label (it has no one-hot channel).
    """

    def __init__(
        self,
        loss: nn.Module,
        weights: Sequence[float] | None = None,
        target_mode: str = "nearest",
    ) -> None:
        super().__init__()
        if target_mode not in ("nearest", "maxpool"):
            raise ValueError(f"target_mode must be 'nearest' or 'maxpool', got {target_mode!r}")
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        self.target_mode = target_mode

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        """``outputs``: list of ``(B, C, *spatial_i)`` logits, full resolution first (a single
        tensor is accepted); ``target``: full-resolution labels or one-hot -> scalar."""
        if isinstance(outputs, Tensor):
            outputs = [outputs]
        weights = self.weights or default_deep_supervision_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ValueError(
                f"DeepSupervisionLoss has {len(weights)} weights but got {len(outputs)} outputs"
            )
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for weight, logits in zip(weights, outputs, strict=True):
            if weight == 0:
                continue
            small = downsample_target(target, logits.shape[2:], logits.shape[1], self.target_mode)
            total = total + weight * self.loss(logits, small)
        return total
