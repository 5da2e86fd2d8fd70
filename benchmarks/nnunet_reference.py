"""nnU-Net v2's network and loss on one plan, for the benchmarks that compare unetkit with it.

* Network: ``PlainConvUNet`` from ``dynamic-network-architectures`` (nnU-Net's own network code;
  it needs only torch and numpy, so it installs with ``pip install --no-deps``): two
  conv-norm-LeakyReLU per stage, strided convolutions instead of pooling, instance norm
  (eps 1e-5, affine), convolution biases, deep supervision, as nnU-Net's default plans build it.
* Loss: ``DC_and_CE_loss`` with ``MemoryEfficientSoftDiceLoss`` (batch Dice, no background,
  smooth 1e-5) in a ``DeepSupervisionWrapper`` with weights ``1, 1/2, 1/4, ...``, the last 0,
  normalised, as ``nnUNetTrainer._build_loss`` builds it. From ``nnunetv2`` when it is installed;
  else ``ReproducedDCandCE``, which computes the same operations in the same order, so autograd
  keeps the same tensors: the softmax probabilities (from ``softmax_helper_dim1``), the float32
  one-hot target that multiplies them (nnU-Net v2.8's ``MemoryEfficientSoftDiceLoss`` builds it
  in float32 with ``scatter_``; its foreground channels are a view), and for
  ``nn.CrossEntropyLoss`` the log-probabilities and the int64 target (``RobustCrossEntropyLoss``
  calls ``.long()``).
  ``tests/test_memory_vs_nnunet.py`` checks value and kept bytes against nnunetv2 where it is
  installed. Not reproduced: the ignore label and DDP's all-gather (not used by these plans).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def network_installed() -> bool:
    """True when ``dynamic_network_architectures`` (PlainConvUNet) can be imported."""
    return importlib.util.find_spec("dynamic_network_architectures") is not None


def nnunet_installed() -> bool:
    """True when nnU-Net v2 itself (its loss classes) can be imported."""
    return network_installed() and importlib.util.find_spec("nnunetv2") is not None


def plain_conv_unet(widths: Sequence[int], dims: int, classes: int,
                    in_channels: int = 1) -> nn.Module:
    """nnU-Net's ``PlainConvUNet`` with ``widths`` per stage, 3-kernels, stride 2 below stage 0."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    conv, norm = (nn.Conv3d, nn.InstanceNorm3d) if dims == 3 else (nn.Conv2d, nn.InstanceNorm2d)
    stages = len(widths)
    return PlainConvUNet(
        in_channels, stages, list(widths), conv, [[3] * dims] * stages,
        [[1] * dims] + [[2] * dims] * (stages - 1), 2, classes, 2, conv_bias=True,
        norm_op=norm, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=True)


def deep_supervision_weights(count: int) -> list[float]:
    """``nnUNetTrainer._build_loss``: ``1 / 2**i``, the last 0, normalised to sum 1."""
    weights = [1 / 2**i for i in range(count)]
    weights[-1] = 0.0
    return [w / sum(weights) for w in weights]


class ReproducedSoftDice(nn.Module):
    """``MemoryEfficientSoftDiceLoss(softmax_helper_dim1, batch_dice, do_bg=False)`` of nnU-Net
    v2.8 without a loss mask: ``-mean Dice``; ``x (B, C, *S)`` logits, ``target (B, 1, *S)``."""

    def __init__(self, batch_dice: bool = True, smooth: float = 1e-5) -> None:
        super().__init__()
        self.batch_dice, self.smooth = batch_dice, smooth

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(x, 1)
        axes = tuple(range(2, x.ndim))
        with torch.no_grad():
            onehot = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
            onehot.scatter_(1, target.long(), 1)
            onehot = onehot[:, 1:]
            sum_gt = onehot.sum(axes, dtype=torch.float32)
        probs = probs[:, 1:]
        intersect = (probs * onehot).sum(axes, dtype=torch.float32)
        sum_pred = probs.sum(axes, dtype=torch.float32)
        if self.batch_dice:
            intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
        return -((2 * intersect + self.smooth)
                 / (sum_gt + sum_pred + self.smooth).clamp_min(1e-8)).mean()


class ReproducedDCandCE(nn.Module):
    """``DC_and_CE_loss`` without an ignore label: ``CE(x, t[:, 0]) + dc(x, t)``, ``dc`` a
    ``ReproducedSoftDice`` (an attribute, as nnU-Net's, so that it can be compiled alone)."""

    def __init__(self, batch_dice: bool = True, smooth: float = 1e-5) -> None:
        super().__init__()
        self.dc = ReproducedSoftDice(batch_dice, smooth)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = self.dc(x, target)  # nnU-Net computes the Dice term first
        return F.cross_entropy(x, target[:, 0].long()) + dice


class ReproducedDeepSupervision(nn.Module):
    """``DeepSupervisionWrapper``: ``sum(w_i * loss(x_i, t_i))`` over the outputs with
    ``w_i != 0``."""

    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        self.loss, self.weights = loss, tuple(weights)

    def forward(self, outputs: Sequence[torch.Tensor],
                targets: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum(w * self.loss(o, t) for w, o, t in zip(self.weights, outputs, targets,
                                                           strict=True) if w != 0)


def nnunet_loss(outputs: int, reproduced: bool = False,
                compiled: bool = False) -> tuple[nn.Module, str]:
    """nnU-Net's training loss for ``outputs`` deep-supervision outputs and where it came from:
    ``"nnunetv2"`` (the installed package) or ``"reproduced"`` (``ReproducedDCandCE``).
    ``compiled``: its Dice term through ``torch.compile``, as nnU-Net does when it compiles."""
    weights = deep_supervision_weights(outputs)
    loss, source = _dc_and_ce(reproduced)
    if compiled:
        loss.dc = torch.compile(loss.dc)
    wrapper = ReproducedDeepSupervision if source == "reproduced" else _nnunet_wrapper()
    return wrapper(loss, weights), source


def _nnunet_wrapper() -> type:
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    return DeepSupervisionWrapper


def _dc_and_ce(reproduced: bool) -> tuple[nn.Module, str]:
    if nnunet_installed() and not reproduced:
        from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

        return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False,
                               "ddp": False}, {}, weight_ce=1, weight_dice=1, ignore_label=None,
                              dice_class=MemoryEfficientSoftDiceLoss), "nnunetv2"
    return ReproducedDCandCE(), "reproduced"


def nnunet_targets(mask: torch.Tensor, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The targets nnU-Net's data loader hands the loss: ``(B, 1, *S_i)`` float label maps at each
    output's size (nearest down-sampling), made before the step, outside autograd."""
    with torch.no_grad():
        return [F.interpolate(mask[:, None].float(), size=o.shape[2:], mode="nearest")
                for o in outputs]
