"""Segmentation losses: pure functions (``functional``) first, thin ``nn.Module`` wrappers on top.

Logits are ``(B, C, *spatial)`` (2D or 3D); ``C == 1`` is binary (sigmoid), ``C > 1`` is
multi-class (softmax). Targets are label maps ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot
``(B, C, *spatial)``. See ``docs/metrics.md`` for every convention.
"""

from unetkit.losses.deep_supervision import (
    DeepSupervisionLoss,
    default_deep_supervision_weights,
    downsample_target,
)
from unetkit.losses.functional import (
    bce_with_logits_loss,
    cross_entropy_loss,
    focal_loss,
    soft_dice_loss,
    soft_jaccard_loss,
    tversky_loss,
)
from unetkit.losses.modules import (
    CompoundLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    JaccardLoss,
    TverskyLoss,
    build_loss,
)
from unetkit.losses.targets import prepare_target, probabilities

__all__ = [
    "CompoundLoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DeepSupervisionLoss",
    "DiceLoss",
    "FocalLoss",
    "JaccardLoss",
    "TverskyLoss",
    "bce_with_logits_loss",
    "build_loss",
    "cross_entropy_loss",
    "default_deep_supervision_weights",
    "downsample_target",
    "focal_loss",
    "prepare_target",
    "probabilities",
    "soft_dice_loss",
    "soft_jaccard_loss",
    "tversky_loss",
]
