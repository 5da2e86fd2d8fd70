"""Masks that hold something other than labels: anti-aliased edges, one odd mask in a set.

Pure numpy/scipy rules for the data doctor (``unetkit.data.doctor``). Both matter most when no
labels are declared, because training then takes every value it finds for a class: one mask
resized with interpolation turns a two-class data set into a 30-class network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

MIN_VALUES = 4  # a binary mask plus at least two in-between values
EDGE_FRACTION = 0.9  # of in-between voxels on an edge: they have no region of their own
MIXED_FRACTION = 0.5  # of in-between voxels next to another non-background value: a ramp
UNION_LIMIT = 20  # label values in a data set of mostly binary masks: more is suspicious


def looks_antialiased(mask: np.ndarray, unique: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> bool:
    """True when a mask's values beyond its two most frequent look like smoothed edges.

    Call the two most frequent values background and foreground and the others in-between.
    Anti-aliasing (a bilinear resize, a blur, a lossy save) puts in-between values only where
    background meets foreground: at least ``EDGE_FRACTION`` of them lie on an edge (their
    3x3(x3) neighbourhood holds another value) and at least ``MIXED_FRACTION`` of them touch a
    value that is neither their own nor the background (the ramp up to the foreground, or the
    varying values along a thin smoothed membrane). Real label regions have interiors, and
    small separate objects of an instance map touch only the background.

    Args:
        mask: ``(*spatial)`` integer values as stored.
        unique: ``np.unique(mask, return_counts=True)`` when already computed.
    """
    values, counts = unique if unique is not None else np.unique(mask, return_counts=True)
    if len(values) < MIN_VALUES:
        return False
    order = np.argsort(counts, kind="stable")[::-1]
    # neighbours other than the background: the background is replaced by a value just
    # outside the mask's range (scipy's min/max filters misbehave on int64 extremes)
    low, high = int(values[0]) - 1, int(values[-1]) + 1
    x = np.asarray(mask).astype(_signed_type(low, high), copy=False)
    background, foreground = int(values[order[0]]), int(values[order[1]])
    between = (x != background) & (x != foreground)
    edge = ndimage.maximum_filter(x, size=3) != ndimage.minimum_filter(x, size=3)
    above = ndimage.maximum_filter(np.where(x == background, low, x), size=3) > x
    below = ndimage.minimum_filter(np.where(x == background, high, x), size=3) < x
    total = int(between.sum())
    on_edge = int((between & edge).sum())
    mixed = int((between & (above | below)).sum())
    return on_edge >= EDGE_FRACTION * total and mixed >= MIXED_FRACTION * total


def _signed_type(low: int, high: int) -> type:
    """The smallest of int16/int32/int64 holding ``low..high`` (memory for large volumes)."""
    for dtype in (np.int16, np.int32):
        if np.iinfo(dtype).min < low and high < np.iinfo(dtype).max:
            return dtype
    return np.int64


def odd_masks(values: dict[Path, set[int]]) -> list[Path]:
    """Masks whose values stand out in a data set of mostly binary masks.

    When more than half of the masks hold at most two values and all masks together hold more
    than ``UNION_LIMIT`` values, the masks holding values that no binary mask holds are odd
    (anti-aliased, an instance map, another encoding).

    Args:
        values: ``{mask path: the set of values it holds}``.
    """
    binary = [v for v in values.values() if len(v) <= 2]
    union = set().union(*values.values()) if values else set()
    if len(binary) * 2 <= len(values) or len(union) <= UNION_LIMIT:
        return []
    common = set().union(*binary)
    return [path for path, held in values.items() if not held <= common]
