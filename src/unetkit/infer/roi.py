"""``unetkit predict --roi DIR``: predictions restricted to each case's region of interest.

A case's region-of-interest file (nonzero = inside, on the input's grid) is found in ``DIR`` by
the case id, else by the input file's stem (``21_training.tif`` pairs with ``21_training.png``).
Outside the region the mask is background and the saved probabilities are those of a certain
background (1 for class 0, 0 for the others; 0 for every region of a region model), so that
threshold-free scores computed from them are not moved by pixels nobody scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data import io
from unetkit.data.roi import read_roi
from unetkit.infer.predictor import Prediction


def roi_files(roi_dir: str | Path) -> dict[str, Path]:
    """``{stem: file}`` of the readable files in ``roi_dir``.

    Raises:
        FileNotFoundError: ``roi_dir`` is not a folder.
    """
    folder = Path(roi_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--roi {roi_dir}: not a folder")
    return {io.split_suffix(p)[0]: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and io.is_supported(p)}


def find_roi(files: dict[str, Path], case_id: str, source: Path, roi_dir: str | Path) -> Path:
    """The region-of-interest file of a case: by case id, else by the input file's stem.

    Raises:
        FileNotFoundError: neither name has a file in ``roi_dir``.
    """
    stem = source.name if source.is_dir() else io.split_suffix(source)[0]
    for name in (case_id, stem):
        if name in files:
            return files[name]
    raise FileNotFoundError(f"no region of interest for case {case_id} in {roi_dir} (looked "
                            f"for {case_id}.* and {stem}.*)")


def restrict_to_roi(prediction: Prediction, roi: np.ndarray, background: int = 0,
                    source: str = "the region of interest") -> Prediction:
    """Background outside ``roi`` in ``prediction``'s labels and probabilities (in place).

    Args:
        prediction: labels ``(*spatial)`` and optional probabilities ``(K, *spatial)``.
        roi: ``(*spatial)`` bool, True inside.
        background: the label value written for background.
        source: what a shape error calls ``roi`` (its file).

    Raises:
        ValueError: ``roi`` is not on the prediction's grid.
    """
    roi = np.asarray(roi, bool)
    if roi.shape != prediction.labels.shape:
        raise ValueError(f"{source}: region of interest shape {roi.shape} differs from the "
                         f"image's {prediction.labels.shape}")
    outside = ~roi
    prediction.labels[outside] = background
    if prediction.probabilities is not None:
        prediction.probabilities[:, outside] = 0.0
        if prediction.regions is None:  # class probabilities; region ones are all 0 there
            prediction.probabilities[0, outside] = 1.0
    return prediction


def restrict_to_roi_file(prediction: Prediction, path: Path, background: int = 0) -> Prediction:
    """``restrict_to_roi`` with the region read from ``path``."""
    roi, _ = read_roi(path)
    return restrict_to_roi(prediction, roi, background, str(path))
