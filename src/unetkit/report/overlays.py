"""Overlay panels: the prediction against the ground truth, and the error map.

The image under them (``display_image``): a 2-D image of 3 or 4 channels (an RGB or RGBA
photograph: H&E histology, fundus, dermoscopy) in its own colours, 8-bit values as stored;
every other image as its first channel in grey, contrast-stretched between its 1st and 99th
percentiles.

* ``overlay_image``: the image with the predicted labels filled in their class colours
  (``unetkit.infer.files.PALETTE``) and the ground truth outlined in yellow (``GT_OUTLINE``)
  just outside each of its classes, so that the outline never hides a thin structure.
* ``error_image``: the image dimmed, agreeing foreground in green, false positives (predicted
  foreground where the truth is background) in magenta, false negatives (truth missed) in cyan
  and, with several classes, foreground given the wrong class in orange; errors are solid
  colours so that one-pixel mistakes on thin structures stay visible.

Volumes show one slice (``unetkit.report.slices``: through the largest ground-truth structure,
radiological orientation when an affine is given). The pictures with legend and caption that
users get are ``unetkit.report.picture``'s.
"""

from __future__ import annotations

import numpy as np

from unetkit.report.slices import display_planes

GT_OUTLINE = (255, 255, 0)
CORRECT = (0, 190, 0)
FALSE_POSITIVE = (255, 0, 255)
FALSE_NEGATIVE = (0, 255, 255)
WRONG_CLASS = (255, 140, 0)
_CORRECT_ALPHA = 0.55
_DIM = 0.6  # image brightness under the error map


def palette() -> np.ndarray:
    """Class colours ``(K, 3)`` float32 (index 0 background), shared with palette PNG masks."""
    from unetkit.infer.files import PALETTE

    return np.array(PALETTE, dtype=np.float32)


def grey_uint8(image: np.ndarray) -> np.ndarray:
    """``(*spatial)`` intensities scaled to 0..255 between their 1st and 99th percentiles."""
    grey = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(grey, (1, 99)) if grey.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    return (np.clip((grey - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _enlarge(plane: np.ndarray, scale: int) -> np.ndarray:
    """Each pixel of a 2-D plane as a ``scale`` x ``scale`` square (nearest neighbour)."""
    return plane if scale == 1 else np.repeat(np.repeat(plane, scale, 0), scale, 1)


def display_image(image: np.ndarray) -> np.ndarray:
    """``(C, *spatial)`` -> what the panels show: ``(H, W, 3)`` colours of a 2-D image with 3
    or 4 channels (alpha dropped), else channel 0 ``(*spatial)`` (drawn in grey)."""
    image = np.asarray(image)
    return np.moveaxis(image[:3], 0, -1) if is_colour(image) else image[0]


def is_colour(image: np.ndarray) -> bool:
    """True for a ``(C, H, W)`` image of 3 or 4 channels: shown in its own colours."""
    return np.ndim(image) == 3 and np.shape(image)[0] in (3, 4)


def colour_uint8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` colours as 0..255: values within 0..255 (8-bit photographs) as they are,
    within 0..1 scaled by 255, others stretched between the 1st and 99th percentile of all
    channels together (the balance between the colours kept)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    low, high = (float(rgb.min()), float(rgb.max())) if rgb.size else (0.0, 1.0)
    if low >= 0 and high <= 1:
        return (rgb * 255).round().astype(np.uint8)
    if low >= 0 and high <= 255:
        return rgb.round().astype(np.uint8)
    low, high = np.percentile(rgb, (1, 99))
    return (np.clip((rgb - low) / max(high - low, 1e-6), 0, 1) * 255).round().astype(np.uint8)


def _rgb(plane: np.ndarray, brightness: float = 1.0) -> np.ndarray:
    """A display plane (``display_image``: ``(H, W)`` grey or ``(H, W, 3)`` colours) as
    ``(H, W, 3)`` float32 0..255, times ``brightness``."""
    if plane.ndim == 3:
        return colour_uint8(plane).astype(np.float32) * brightness
    return np.repeat(grey_uint8(plane).astype(np.float32)[..., None] * brightness, 3, axis=-1)


def outline_width(scale: int) -> int:
    """Width in display pixels of the ground-truth outline of a picture enlarged ``scale``
    times: one pixel at full size, a third of an image pixel when enlarged."""
    return max(1, scale // 3)


def overlay_panel(grey: np.ndarray, labels: np.ndarray, gt: np.ndarray | None = None,
                  alpha: float = 0.5, scale: int = 1) -> np.ndarray:
    """2-D ``(H, W)`` planes (``grey``: ``(H, W)`` or ``(H, W, 3)`` colours) ->
    ``(H * scale, W * scale, 3)`` uint8: labels filled in their class colours, the ground
    truth outlined in ``GT_OUTLINE`` just outside each of its classes (the outline never
    covers the structure, so thin predicted structures stay visible)."""
    from scipy import ndimage

    grey, labels = _enlarge(grey, scale), _enlarge(labels, scale)
    colours = palette()
    rgb = _rgb(grey)
    fill = labels > 0
    tint = colours[labels.astype(np.int64) % len(colours)]
    rgb[fill] = (1 - alpha) * rgb[fill] + alpha * tint[fill]
    if gt is not None:
        gt = _enlarge(gt, scale)
        for value in np.unique(gt[gt > 0]):
            inside = gt == value
            ring = ndimage.binary_dilation(inside, iterations=outline_width(scale)) & ~inside
            rgb[ring] = GT_OUTLINE
    return rgb.round().clip(0, 255).astype(np.uint8)


def error_panel(grey: np.ndarray, labels: np.ndarray, gt: np.ndarray,
                scale: int = 1) -> np.ndarray:
    """2-D ``(H, W)`` planes (``grey`` may be ``(H, W, 3)`` colours) ->
    ``(H * scale, W * scale, 3)`` uint8 error map (colours in the module doc)."""
    grey, labels, gt = (_enlarge(a, scale) for a in (grey, labels, gt))
    rgb = _rgb(grey, _DIM)
    pred_fg, gt_fg = labels > 0, gt > 0
    correct = pred_fg & (labels == gt)
    rgb[correct] = (1 - _CORRECT_ALPHA) * rgb[correct] + _CORRECT_ALPHA * np.array(CORRECT)
    rgb[pred_fg & ~gt_fg] = FALSE_POSITIVE
    rgb[gt_fg & ~pred_fg] = FALSE_NEGATIVE
    rgb[pred_fg & gt_fg & (labels != gt)] = WRONG_CLASS
    return rgb.round().clip(0, 255).astype(np.uint8)


def overlay_image(
    image: np.ndarray,
    labels: np.ndarray,
    gt: np.ndarray | None = None,
    alpha: float = 0.5,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Image with predicted labels filled in colour and the ground truth outlined in yellow.

    Args:
        image: ``(C, *spatial)`` intensities (``display_image``: colours or grey).
        labels: ``(*spatial)`` predicted label values (colour ``PALETTE[value]``).
        gt: optional ``(*spatial)`` ground truth, outlined in yellow (one pixel just outside
            each class).
        alpha: opacity of the filled labels.
        affine: voxel -> RAS+ affine of a volume (radiological display), or None.

    Returns:
        ``(H, W, 3)`` uint8 RGB; volumes show the slice ``unetkit.report.slices`` chooses.
    """
    grey, pred, truth, _ = display_planes(display_image(image), labels, gt, affine)
    return overlay_panel(grey, pred, truth, alpha)


def error_image(image: np.ndarray, labels: np.ndarray, gt: np.ndarray,
                affine: np.ndarray | None = None) -> np.ndarray:
    """The error map ``(H, W, 3)`` uint8 of ``labels`` against ``gt`` on ``image``
    ``(C, *spatial)`` (same slice and orientation as ``overlay_image``)."""
    grey, pred, truth, _ = display_planes(display_image(image), labels, gt, affine)
    assert truth is not None
    return error_panel(grey, pred, truth)
