"""Which labels a run trains on, and how its mask files store them.

``label_names``: ``{value: name}`` from the declared labels (``unetkit.data.declared``), else the
values the masks hold; ``contiguous``: those values as the network's channels ``0..K-1``;
``stored_mask_values`` / ``mask_format``: the values and file format the training masks use
(e.g. ``{0: 0, 1: 255}`` in PNG files), so that ``unetkit predict`` writes masks the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def mask_format(cases: list[Any]) -> str | None:
    """The suffix most training mask files have (``".png"``), so that predictions of images
    in another format (DRIVE: TIFF photographs, PNG masks) come out like the masks."""
    from collections import Counter

    from unetkit.data import io

    suffixes = Counter(io.split_suffix(c.mask_path)[1].lower() for c in cases
                       if c.mask_path is not None and not Path(c.mask_path).is_dir())
    return suffixes.most_common(1)[0][0] if suffixes else None


def stored_mask_values(case: Any, mask: np.ndarray) -> dict[int, int]:
    """``{label: value stored in the mask file}`` by reading the file raw (no 0/255 conversion)."""
    from unetkit.data import io

    raw, _ = io.read_image(case.mask_path)
    raw = np.asarray(raw).reshape(mask.shape) if raw.size == mask.size else None
    values: dict[int, int] = {}
    for label in np.unique(mask).tolist():
        if raw is None:
            values[int(label)] = int(label)
            continue
        stored, counts = np.unique(raw[mask == label], return_counts=True)
        values[int(label)] = int(stored[np.argmax(counts)])
    return values


def label_names(
    declared: dict[int, str] | None, masks: list[np.ndarray]
) -> dict[int, str]:
    """``{label value: name}`` from the config / dataset.json, else the values the masks hold."""
    if declared:
        names = {int(k): v for k, v in declared.items()}
        names.setdefault(0, "background")
        return dict(sorted(names.items()))
    present = sorted({int(v) for m in masks for v in np.unique(m)} | {0})
    return {v: ("background" if v == 0 else f"class{v}") for v in present}


def contiguous(labels: dict[int, str]) -> tuple[dict[int, str], np.ndarray | None]:
    """Relabel values to 0..K-1 (the network's channels) when they are not already.

    Returns:
        ``({index: name}, lookup table value -> index)``; the table is None when no change.
    """
    values = sorted(labels)
    if values == list(range(len(values))):
        return labels, None
    table = np.zeros(max(values) + 1, dtype=np.int64)
    for index, value in enumerate(values):
        table[value] = index
    return {i: labels[v] for i, v in enumerate(values)}, table
