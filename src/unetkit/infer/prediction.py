"""What a prediction returns: ``Prediction`` (probabilities, label map, geometry, regions) and
``label_map``, class indices -> the checkpoint's label values.

Shared by the single-model ``Predictor`` and the ``EnsemblePredictor``, and by the file writers
(``unetkit.infer.files``), which need the result's shape but not the predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """One predicted case.

    Attributes:
        probabilities: ``(K, *spatial)`` float32 class probabilities (K = number of labels; a
            sigmoid model gives ``[1 - p, p]``; a region model one sigmoid per region), or None
            when not asked for or memory-bounded.
        labels: ``(*spatial)`` label map holding the checkpoint's label values.
        geometry: the input's ``unetkit.data.io.Geometry`` (None for a bare array).
        regions: the names of the probability channels when they are regions, else None.
    """

    probabilities: np.ndarray | None
    labels: np.ndarray
    geometry: Any = None
    regions: list[str] | None = None


def label_map(classes: np.ndarray, values: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Class indices ``(*S)`` -> label ``values[classes]`` (uint8 when all fit, else int32).

    Looked up a chunk at a time: NumPy indexes through an 8-byte copy of the indices, which for
    a whole 4096^2 image would be the largest buffer of the prediction.
    """
    wide = int(values.max(initial=0)) >= 256
    table = values.astype(np.int32 if wide else np.uint8)
    if np.array_equal(values, np.arange(len(values))) and not wide:
        return classes.astype(np.uint8, copy=False)
    flat = np.ascontiguousarray(classes).reshape(-1)
    out = np.empty(flat.shape, dtype=table.dtype)
    for start in range(0, flat.size, chunk):
        out[start:start + chunk] = table[flat[start:start + chunk]]
    out = out.reshape(classes.shape)
    return out.astype(np.uint8) if wide and int(out.max(initial=0)) < 256 else out
