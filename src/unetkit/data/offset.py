"""Masks drawn offset from the images: measure the offset, resample images to remove it.

Some annotations sit a fraction of a pixel away from the structures they mark, always in the same
direction (ISBI 2012's membrane masks lie about 0.64 pixel above and 0.15 pixel left of the dark
membranes, in every one of its 20 slices). A network can learn such an offset, but flips and
rot90 augmentation reverse it, so it learns a blur instead. Shifting each *image* by the offset
aligns it with its mask; the same shift applied to new images before prediction gives masks in
the annotation's own convention again, and every mirror symmetry holds.

The offset of one case is where the correlation between the mask's foreground and the image
peaks: whole-voxel shifts along each axis, refined by a parabola through the best one and its
neighbours. The sign of the correlation at zero shift says whether the structure is bright or
dark. Pure numpy/scipy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

MAX_SHIFT = 2  # whole voxels searched on each side
MIN_OFFSET = 0.1  # smaller median offsets are treated as none


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _peak(left: float, centre: float, right: float) -> float:
    """Sub-voxel position in [-0.5, 0.5] of the maximum of a parabola through three samples."""
    curvature = left - 2.0 * centre + right
    return 0.0 if curvature >= 0 else float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def case_offset(image: np.ndarray, mask: np.ndarray) -> tuple[float, ...]:
    """Offset ``d`` (voxels, per spatial axis) with ``mask(u)`` best matching ``image(u + d)``.

    Args:
        image: ``(C, *spatial)``; the first channel is used.
        mask: ``(*spatial)`` labels; foreground = nonzero.

    Returns:
        One float per spatial axis (0.0 along axes too short to search or without contrast).
    """
    channel = np.asarray(image[0], dtype=np.float64)
    fg = (np.asarray(mask) > 0).astype(np.float64)
    if channel.shape != fg.shape:
        raise ValueError(f"image {channel.shape} and mask {fg.shape} differ in shape")
    m = MAX_SHIFT
    if min(fg.shape) <= 4 * m or fg.min() == fg.max():
        return (0.0,) * fg.ndim
    inner = tuple(slice(m, n - m) for n in fg.shape)
    sign = np.sign(_correlation(fg[inner], channel[inner])) or 1.0
    offsets = []
    for axis in range(fg.ndim):
        scores = []
        for shift in range(-m, m + 1):
            moved = list(inner)
            moved[axis] = slice(m + shift, fg.shape[axis] - m + shift)
            scores.append(sign * _correlation(fg[inner], channel[tuple(moved)]))
        best = int(np.argmax(scores))
        if best in (0, 2 * m):  # at the edge of the search: no refinement
            offsets.append(float(best - m))
            continue
        offsets.append(best - m + _peak(scores[best - 1], scores[best], scores[best + 1]))
    return tuple(offsets)


def estimate_offset(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[float]:
    """Median of the cases' offsets per axis; axes under ``MIN_OFFSET`` voxels count as 0.

    Logs the per-axis spread so a user sees whether the cases agree.
    """
    if not images or len(images) != len(masks):
        raise ValueError("image offset: need at least one image and one mask per image")
    per_case = np.array([case_offset(image, mask) for image, mask in zip(images, masks,
                                                                         strict=True)])
    offset = median_offset(per_case)
    spread = np.percentile(per_case, 75, axis=0) - np.percentile(per_case, 25, axis=0)
    log.info("data: masks lie %s voxels from the images (median of %d cases, interquartile "
             "range %s)", offset, len(per_case), np.round(spread, 2).tolist())
    return offset


def median_offset(per_case: np.ndarray) -> list[float]:
    """``(cases, axes)`` offsets -> their median per axis, rounded to 0.01, below
    ``MIN_OFFSET`` counted as 0."""
    median = np.round(np.median(np.asarray(per_case, dtype=float), axis=0), 2)
    return [float(v) if abs(v) >= MIN_OFFSET else 0.0 for v in median]


def shift_image(image: np.ndarray, offset: Sequence[float] | None) -> np.ndarray:
    """``image (C, *spatial)`` resampled so that ``out(u) = image(u + offset)`` (cubic spline,
    mirrored borders); unchanged when the offset is None or zero."""
    if offset is None or not any(offset):
        return image
    if len(offset) != image.ndim - 1:
        raise ValueError(f"data.image_offset {list(offset)} needs one value per spatial axis of "
                         f"an image shaped {image.shape}")
    shift = (0.0, *(-float(v) for v in offset))
    return ndimage.shift(np.asarray(image, dtype=np.float32), shift, order=3,
                         mode="mirror").astype(np.float32, copy=False)


def folder_offsets(root: str, max_cases: int = 50) -> dict[str, tuple[float, ...]]:
    """``{case id: offset}`` for the image/mask pairs of a data folder (at most ``max_cases``,
    evenly spaced), as ``unetkit check --offset`` prints them."""
    from unetkit.data.dataset import discover_cases, evenly_spaced, load_case

    cases = discover_cases(root)
    offsets = {}
    for case in (cases[i] for i in evenly_spaced(len(cases), max_cases)):
        image, mask, _ = load_case(case)
        if mask is not None:
            offsets[case.case_id] = case_offset(image, mask)
    return offsets
