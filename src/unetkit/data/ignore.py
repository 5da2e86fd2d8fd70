"""Sparse annotations: the ignore label, unetkit's one mechanism for unlabelled pixels.

A mask file may mark pixels as unlabelled with one value: ``data.ignore_label`` (PNG, TIFF, any
format), or nnU-Net v2's convention, a label named ``ignore`` in ``dataset.json`` (the highest
value). Training masks carry ``IGNORE`` (= ``roi.ROI_IGNORE``, 255) on those pixels, exactly as
outside a region of interest, so the losses (``train.loss.ignore_index``), the patch sampler,
validation and threshold calibration treat both the same way: an ignored pixel contributes to
nothing. The ignore label is never a class: the network has no channel for it and prediction
never writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.dataset import DatasetError
from unetkit.data.io import read_image
from unetkit.data.roi import ROI_IGNORE

log = logging.getLogger(__name__)
IGNORE = ROI_IGNORE  # the training-mask label of pixels that count nowhere
IGNORE_NAME = "ignore"  # nnU-Net v2: the label of this name marks unlabelled pixels


def ignore_value(configured: int | None, labels: Mapping[int, str] | None) -> int | None:
    """The mask value of unlabelled pixels: ``configured`` (``data.ignore_label``), else the
    value of the label named ``ignore`` in ``labels`` (dataset.json), else None.

    Raises:
        DatasetError: the ``ignore`` label is not the highest label value (nnU-Net's rule: the
            classes stay ``0..K-1``), or ``configured`` is also a named class.
    """
    labels = dict(labels or {})
    named = [int(v) for v, name in labels.items() if str(name) == IGNORE_NAME]
    if configured is not None:
        name = labels.get(int(configured))
        if name is not None and str(name) != IGNORE_NAME:
            raise DatasetError(f"data.ignore_label {configured}: that value is the class "
                               f"{name!r} in the labels; choose a value no class has")
        return int(configured)
    if not named:
        return None
    if named[0] != max(int(v) for v in labels):
        raise DatasetError(f"dataset.json: the label 'ignore' ({named[0]}) must have the "
                           f"highest value (nnU-Net's convention); labels {sorted(labels)}")
    return named[0]


def unscaled(mask: np.ndarray, path: str | Path, ignore: int | None) -> np.ndarray:
    """``mask`` as read by ``read_mask``, with 255 given back where the file held 255 when 255
    is the ignore label: a 0/255 file is read as labels 0/1 (the binary-mask convention), but
    with ignore 255 it is background and unlabelled pixels (``(*spatial)`` int, unchanged
    otherwise)."""
    if ignore != 255 or mask.size == 0 or int(mask.max()) > 1:
        return mask
    raw, _ = read_image(path)
    if raw.size != mask.size or not (np.asarray(raw) == 255).any():
        return mask
    return np.where(np.asarray(raw).reshape(mask.shape) == 255, 255, mask).astype(mask.dtype)


def class_labels(labels: Mapping[int, str] | None, ignore: int | None
                 ) -> dict[int, str] | None:
    """``labels`` without the ignore label (None stays None)."""
    if labels is None:
        return None
    return {int(v): n for v, n in labels.items() if ignore is None or int(v) != ignore}


def split_ignored(mask: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(mask with 0 where it held ignore, the ignored pixels as bool)``; ``(mask, None)``
    when nothing is ignored. Labels, class statistics and the normaliser are taken from the
    first (ignored pixels as background, which no statistic of a class counts)."""
    if ignore is None:
        return mask, None
    ignored = mask == ignore
    if not ignored.any():
        return mask, None
    return np.where(ignored, 0, mask).astype(mask.dtype, copy=False), ignored


def mark_ignored(mask: np.ndarray, ignored: np.ndarray | None) -> np.ndarray:
    """A copy of the label map with ``IGNORE`` on ``ignored`` pixels (``mask`` if None)."""
    if ignored is None:
        return mask
    out = np.array(mask, copy=True)
    out[ignored] = IGNORE
    return out


def split_cases(masks: dict[str, np.ndarray], ignore: int | None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """``split_ignored`` of every case: ``({case: mask}, {case: ignored pixels or None})``."""
    split = {cid: split_ignored(m, ignore) for cid, m in masks.items()}
    return {cid: s[0] for cid, s in split.items()}, {cid: s[1] for cid, s in split.items()}


def mark_cases(masks: dict[str, np.ndarray], ignored: dict[str, np.ndarray | None],
               ignore_index: int | None, train_ids: Sequence[str] = ()
               ) -> tuple[dict[str, np.ndarray], int | None]:
    """``mark_ignored`` of every case, and the label training ignores: ``IGNORE`` when a case
    has ignored pixels, else ``ignore_index`` (what the regions of interest left). Logs the
    labelled share of the ``train_ids`` cases' pixels."""
    if all(v is None for v in ignored.values()):
        return masks, ignore_index
    masks = {cid: mark_ignored(m, ignored.get(cid)) for cid, m in masks.items()}
    pixels = sum(masks[c].size for c in train_ids)
    labelled = sum(int(np.count_nonzero(masks[c] != IGNORE)) for c in train_ids)
    log.info("data: %.2f%% of the training pixels are labelled (the others are ignored)",
             100 * labelled / max(pixels, 1))
    return masks, IGNORE


def labelled_fraction(counts: Mapping[int, int], ignore: int | None) -> float:
    """Share of a mask's pixels that carry a label (``counts``: value -> pixels)."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return 1.0 - (counts.get(ignore, 0) if ignore is not None else 0) / total


def labelled_summary(records: Sequence[dict[str, Any]], ignore: int | None,
                     warnings: list[str]) -> dict[str, float]:
    """The doctor's ``{case: labelled fraction}`` of records with mask ``counts``; a case
    without a labelled pixel is warned about (it adds nothing to training). The ignore value
    is then dropped from each record's counts, so class frequencies are of labelled pixels."""
    fractions: dict[str, float] = {}
    if ignore is None:
        return fractions
    for record in records:
        counts = record.get("counts")
        if not counts:
            continue
        if ignore == 255 and set(counts) <= {0, 1} and counts.get(1):
            raw, _ = read_image(record["mask"])
            if (np.asarray(raw) == 255).any():  # a 0/255 file: its 255 are unlabelled pixels
                counts = {0: counts.get(0, 0), 255: counts[1]}
        fraction = labelled_fraction(counts, ignore)
        fractions[str(record.get("case", record["path"]))] = fraction
        if fraction == 0.0:
            warnings.append(f"{record['mask']}: every pixel is ignored (label {ignore}); the "
                            "case adds nothing to training or scoring")
        record["counts"] = {v: c for v, c in counts.items() if v != ignore}
    return fractions


def labelled_locations(mask: np.ndarray, ignore: int | None, limit: int) -> np.ndarray | None:
    """``(N, ndim)`` indices of at most ``limit`` evenly spaced labelled pixels of a mask that
    has ignored ones (None when none is ignored: every pixel is labelled)."""
    if ignore is None:
        return None
    ignored = mask == ignore
    if not ignored.any():
        return None
    coords = np.argwhere(~ignored)
    return coords[::max(1, len(coords) // limit)]
