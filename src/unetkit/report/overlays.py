"""Overlays: an image with predicted labels filled in colour and ground-truth outlines on top."""

from __future__ import annotations

from os import PathLike

import numpy as np


def _grey_uint8(image: np.ndarray) -> np.ndarray:
    """Channel 0 of ``(C, *spatial)`` scaled to 0..255 between its 1st and 99th percentiles."""
    grey = np.asarray(image[0], dtype=np.float32)
    low, high = np.percentile(grey, (1, 99)) if grey.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return (np.clip((grey - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D boolean mask with a 4-neighbour outside it."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def pick_slice(labels: np.ndarray, gt: np.ndarray | None = None) -> int:
    """For a 3-D map, the index along the last axis with the most foreground (pred or gt)."""
    fg = (labels > 0) if gt is None else (labels > 0) | (gt > 0)
    counts = fg.reshape(-1, fg.shape[-1]).sum(0)
    return int(counts.argmax()) if counts.any() else fg.shape[-1] // 2


def overlay_image(
    image: np.ndarray,
    labels: np.ndarray,
    gt: np.ndarray | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Image with predicted labels filled in colour and ground-truth outlines on top.

    Args:
        image: ``(C, *spatial)`` intensities (channel 0 shown in grey).
        labels: ``(*spatial)`` predicted label values (colour ``PALETTE[value]``).
        gt: optional ``(*spatial)`` ground truth, drawn as 1-pixel outlines in its class colour
            lightened (yellow for binary masks).
        alpha: opacity of the filled labels.

    Returns:
        ``(H, W, 3)`` uint8 RGB; 3-D inputs show the slice ``pick_slice`` chooses.
    """
    from unetkit.infer.files import PALETTE

    if labels.ndim == 3:
        index = pick_slice(labels, gt)
        image, labels = image[..., index], labels[..., index]
        gt = gt[..., index] if gt is not None else None
    colours = np.array(PALETTE, dtype=np.float32)
    grey = _grey_uint8(image).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    fill = labels > 0
    tint = colours[labels.astype(np.int64) % len(colours)]
    rgb[fill] = (1 - alpha) * rgb[fill] + alpha * tint[fill]
    if gt is not None:
        for value in np.unique(gt[gt > 0]):
            edge = _boundary(gt == value)
            colour = (255, 255, 0) if gt.max() == 1 else 0.5 * (
                colours[int(value) % len(colours)] + 255)
            rgb[edge] = colour
    return rgb.round().clip(0, 255).astype(np.uint8)


def save_overlay(
    path: str | PathLike, image: np.ndarray, labels: np.ndarray, gt: np.ndarray | None = None
) -> PathLike:
    """Write ``overlay_image(image, labels, gt)`` as a PNG at ``path``; returns the path."""
    from pathlib import Path

    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_image(image, labels, gt)).save(path)
    return path
