"""Validation on whole images: sliding-window inference, loss and Dice per class.

The network sees each validation image the way ``unetkit predict`` will: through
``unetkit.infer.sliding_window_inference`` with the training's precision and memory format, the
window being ``infer.window`` or, when unset, the training patch size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from unetkit.config import Config
from unetkit.train.device import PrecisionPlan, autocast, to_memory_format
from unetkit.train.state import unwrap


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` logits -> ``(B, *spatial)`` int64 labels (sigmoid > 0.5 when C == 1)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


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


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    loss_fn: torch.nn.Module,
    config: Config,
    device: torch.device,
    plan: PrecisionPlan,
) -> dict[str, Any]:
    """Mean loss and Dice of ``model`` over whole validation images.

    Args:
        model: the network (a DDP wrapper is unwrapped); put back in train mode afterwards.
        images: normalised images, each ``(C, *spatial)`` float32.
        masks: label maps, each ``(*spatial)`` int64 with values 0..K-1.
        loss_fn: loss on full-resolution logits (no deep-supervision wrapper).
        config: the run's config (window, overlap, labels).
        device: where the network lives.
        plan: precision and memory format of the network.

    Returns:
        ``{"val_loss": float, "val_dice": float, "dice_<label>": float, ...}``, foreground only.
    """
    from unetkit.infer.sliding_window import sliding_window_inference
    from unetkit.metrics import case_metrics

    net = unwrap(model)
    deep_supervision = getattr(net, "deep_supervision", False)
    net.deep_supervision = False
    net.eval()

    def network(x: torch.Tensor) -> torch.Tensor:
        with autocast(plan, device):
            return net(to_memory_format(x, plan)).float()

    window = config.infer.window or config.data.patch_size
    foreground = list(range(1, max(net.out_channels, 2)))
    losses, per_case = [], []
    try:
        for image, mask in zip(images, masks, strict=True):
            x = torch.from_numpy(image)[None].to(device)
            logits = sliding_window_inference(
                x, network, window, config.infer.overlap, gaussian=config.infer.gaussian
            )
            target = torch.from_numpy(mask)[None].to(device)
            losses.append(float(loss_fn(logits, target)))
            labels = logits_to_labels(logits)[0].cpu().numpy()
            per_case.append(case_metrics(labels, mask, foreground, metrics=("dice",)))
    finally:
        net.deep_supervision = deep_supervision
        net.train()
    return {"val_loss": float(np.mean(losses)), **mean_dice(per_case, foreground)}
