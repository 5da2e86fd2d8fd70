"""Soft skeletons and the clDice loss for thin tubular structures (vessels, neurites).

clDice (Shit et al., CVPR 2021) scores how much of the true centreline a prediction covers
(topology sensitivity) and how much of the predicted centreline lies inside the truth
(topology precision), so a missed thin vessel costs as much as a missed thick one, where a
region Dice barely notices it. The soft skeleton is morphological: repeated erosions
(min-pooling along each axis) and openings (erosion then max-pooling), each iteration adding
what the opening removed, so it is differentiable and works on probabilities, in 2D and 3D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.losses.targets import prepare_target, probabilities


def _max_pool(x: Tensor, kernel: tuple[int, ...]) -> Tensor:
    padding = tuple(k // 2 for k in kernel)
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    return pool(x, kernel, stride=1, padding=padding)


def soft_erode(x: Tensor) -> Tensor:
    """Minimum over a 3-voxel line along each spatial axis, the smallest of them:
    ``(B, C, *spatial) -> (B, C, *spatial)`` (a cross-shaped erosion that keeps corners)."""
    dims = x.ndim - 2
    lines = [tuple(3 if a == axis else 1 for a in range(dims)) for axis in range(dims)]
    return torch.stack([-_max_pool(-x, k) for k in lines]).amin(0)


def soft_dilate(x: Tensor) -> Tensor:
    """Maximum over the 3x3(x3) neighbourhood."""
    return _max_pool(x, (3,) * (x.ndim - 2))


def soft_skeleton(x: Tensor, iterations: int = 10) -> Tensor:
    """Soft skeleton of ``x (B, C, *spatial)`` in [0, 1]: what each opening removes from
    ever thinner erosions, accumulated. ``iterations`` bounds the half-width (voxels) of the
    structures that are reduced to their centreline; a 1-voxel line is its own skeleton."""
    eroded = soft_erode(x)
    skeleton = F.relu(x - soft_dilate(eroded))
    for _ in range(iterations):  # each opening's erosion is the next iteration's image
        x, eroded = eroded, soft_erode(eroded)
        delta = F.relu(x - soft_dilate(eroded))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def soft_cldice_loss(logits: Tensor, target: Tensor, *, iterations: int = 10,
                     smooth: float = 1e-5, include_background: bool = False,
                     ignore_index: int | None = None) -> Tensor:
    """``1 - 2 Tprec Tsens / (Tprec + Tsens)`` over the batch, per foreground class, averaged.

    ``Tprec = sum(skel(P) * G) / sum(skel(P))``, ``Tsens = sum(skel(G) * P) / sum(skel(G))``.

    Args:
        logits: ``(B, C, *spatial)`` (``C == 1``: sigmoid).
        target: labels ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot.
        iterations: soft-skeleton iterations (at least the half-width of the thickest
            structure that should count by its centreline).
        smooth: added to each ratio's numerator and denominator.
        include_background: keep channel 0 when ``C > 1``.
        ignore_index: label of pixels excluded (they count as neither structure nor
            background in either skeleton).
    """
    prepared = prepare_target(logits, target, ignore_index)
    probs, truth = probabilities(logits), prepared.onehot
    if prepared.valid is not None:
        probs = probs * prepared.valid
    if not include_background and probs.shape[1] > 1:
        probs, truth = probs[:, 1:], truth[:, 1:]
    axes = (0, *range(2, probs.ndim))
    skel_pred, skel_true = soft_skeleton(probs, iterations), soft_skeleton(truth, iterations)
    precision = ((skel_pred * truth).sum(axes) + smooth) / (skel_pred.sum(axes) + smooth)
    sensitivity = ((skel_true * probs).sum(axes) + smooth) / (skel_true.sum(axes) + smooth)
    score = 2 * precision * sensitivity / (precision + sensitivity).clamp_min(1e-8)
    return 1 - score.mean()


class ClDiceLoss(nn.Module):
    """``soft_cldice_loss`` as a module: ``loss(logits, target) -> scalar``."""

    def __init__(self, iterations: int = 10, smooth: float = 1e-5,
                 include_background: bool = False, ignore_index: int | None = None) -> None:
        super().__init__()
        self.iterations, self.smooth = iterations, smooth
        self.include_background, self.ignore_index = include_background, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits (B, C, *spatial)``, ``target`` labels or one-hot -> scalar."""
        return soft_cldice_loss(logits, target, iterations=self.iterations, smooth=self.smooth,
                                include_background=self.include_background,
                                ignore_index=self.ignore_index)
