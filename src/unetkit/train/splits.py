"""Train/validation splits: a validation fraction, an explicit split file, or k-fold; and a
spatial split, held-out bands of the training masks, for calibration without validation cases.

All are deterministic functions of the sorted case ids and the seed, so every rank of a DDP
job and every resumed run computes the same split.

Split files (JSON or YAML) hold either ``{"train": [ids], "val": [ids]}`` or nnU-Net's
``splits_final.json`` layout, a list of such dicts, one per fold (then ``data.fold`` picks one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml


def split_fraction(case_ids: list[str], val_fraction: float, seed: int) -> tuple[list, list]:
    """Hold out ``round(n * val_fraction)`` cases (at least one when the fraction is > 0 and n > 1).

    Returns:
        ``(train_ids, val_ids)``, each sorted.
    """
    ids = sorted(case_ids)
    if val_fraction <= 0 or len(ids) < 2:
        return ids, []
    n_val = min(max(int(round(len(ids) * val_fraction)), 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [c for c in ids if c not in set(val)], val


def split_kfold(case_ids: list[str], fold: int, folds: int, seed: int) -> tuple[list, list]:
    """Fold ``fold`` of a shuffled ``folds``-fold split: that fold validates, the others train.

    Raises:
        ValueError: ``fold`` outside ``0..folds-1`` or fewer cases than folds.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"--fold {fold}: must be in 0..{folds - 1} for --folds {folds}")
    ids = sorted(case_ids)
    if len(ids) < folds:
        raise ValueError(f"--folds {folds}: only {len(ids)} cases; use fewer folds")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in np.array_split(order, folds)[fold])
    return [c for c in ids if c not in set(val)], val


def split_from_file(
    path: str | Path, case_ids: list[str], fold: int | None = None
) -> tuple[list, list]:
    """Read a split file; every id in it must be a known case.

    Raises:
        ValueError: unreadable file, wrong layout, missing fold, or unknown case ids (listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data.split_file: {path} not found")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"data.split_file: {path} is not valid JSON/YAML: {error}") from None
    if isinstance(data, list):
        if fold is None or not 0 <= fold < len(data):
            raise ValueError(f"data.split_file: {path} holds {len(data)} folds; set --fold 0..")
        data = data[fold]
    if not isinstance(data, dict) or "train" not in data or "val" not in data:
        raise ValueError(f"data.split_file: {path} needs keys 'train' and 'val' (lists of ids)")
    train, val = [str(c) for c in data["train"]], [str(c) for c in data["val"]]
    unknown = sorted(set(train + val) - set(case_ids))
    if unknown:
        raise ValueError(f"data.split_file: {path} names unknown cases: {', '.join(unknown[:10])}")
    return sorted(train), sorted(val)


def make_split(
    case_ids: list[str],
    *,
    val_fraction: float,
    seed: int,
    split_file: str | Path | None = None,
    fold: int | None = None,
    folds: int = 5,
) -> tuple[list[str], list[str]]:
    """The configured split: split file, else k-fold when ``fold`` is set, else fraction."""
    if split_file is not None:
        return split_from_file(split_file, case_ids, fold)
    if fold is not None:
        return split_kfold(case_ids, fold, folds, seed)
    return split_fraction(case_ids, val_fraction, seed)


def hold_out_bands(masks: list[np.ndarray], fraction: float, seed: int, ignore: int
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold a band of rows of every training mask out of training, to calibrate on.

    A network predicts the pixels whose labels it learned more confidently than new images: on
    DRIVE the best threshold on held-out images lay 0.05-0.12 below the one found on the
    training images, which cost up to 0.007 F1 (docs/planner.md). The labels of a band (rows
    ``fraction`` of the first spatial axis, at a seeded position among the rows with labelled
    pixels) are ``ignore`` in training; the images stay whole, so the band is still seen as
    context, never as a target.

    Args:
        masks: ``(*spatial)`` label maps, ``ignore`` where nothing is scored.
        fraction: share of the first axis's rows in the band, in (0, 0.5].
        seed: the run's seed.
        ignore: the label that counts in no loss and no score.

    Returns:
        ``(train_masks, band_masks)``: copies with ``ignore`` inside the band, and with
        ``ignore`` everywhere but the band.
    """
    rng = np.random.default_rng(seed)
    train_masks, band_masks = [], []
    for mask in masks:
        labelled = np.flatnonzero((mask != ignore).reshape(mask.shape[0], -1).any(axis=1))
        first, last = (int(labelled[0]), int(labelled[-1])) if labelled.size else (0, 0)
        rows = min(max(1, round(mask.shape[0] * fraction)), mask.shape[0] - 1)
        start = int(rng.integers(first, max(first, last + 1 - rows) + 1))
        band = slice(start, start + rows)
        held, kept = np.full_like(mask, ignore), mask.copy()
        held[band], kept[band] = mask[band], ignore
        train_masks.append(kept)
        band_masks.append(held)
    return train_masks, band_masks
