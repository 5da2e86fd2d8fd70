"""Sparsely labelled data sets for the ignore-label tests: disks whose masks leave a known
part unlabelled (the ignore value), in the plain or the nnU-Net layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def ignored_region(size: int, case: int) -> np.ndarray:
    """The unlabelled pixels of case ``case``: the right 40% of the columns and a small square
    that moves with the case."""
    ignored = np.zeros((size, size), bool)
    ignored[:, int(size * 0.6):] = True
    ignored[2 + case:6 + case, 2:6] = True
    return ignored


def write_sparse(root: Path, n_cases: int = 4, size: int = 32, ignore: int = 2,
                 nnunet: bool = True, seed: int = 0) -> tuple[Path, list[np.ndarray],
                                                              list[np.ndarray]]:
    """Disks (bright on dark) with masks 0/1 and ``ignore`` on ``ignored_region``.

    ``nnunet``: ``imagesTr/`` + ``labelsTr/`` + dataset.json whose label ``ignore`` has the
    value ``ignore`` (nnU-Net v2); else ``images/`` + ``masks/`` (``data.ignore_label``).

    Returns:
        ``(root, dense masks, ignored pixels)``, one per case.
    """
    rng = np.random.default_rng(seed)
    images_dir = root / ("imagesTr" if nnunet else "images")
    masks_dir = root / ("labelsTr" if nnunet else "masks")
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    dense, ignored = [], []
    for i in range(n_cases):
        mask = np.zeros((size, size), bool)
        for cy, cx in ((size // 3, size // 3 + i), (2 * size // 3, 2 * size // 3 - i)):
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 25
        image = 60 + 120 * mask + rng.normal(0, 12, mask.shape)
        stored = mask.astype(np.uint8)
        region = ignored_region(size, i)
        stored[region] = ignore
        name = f"c{i}_0000.png" if nnunet else f"c{i}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(images_dir / name)
        Image.fromarray(stored).save(masks_dir / f"c{i}.png")
        dense.append(mask.astype(np.int64))
        ignored.append(region)
    if nnunet:
        (root / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "light"}, "file_ending": ".png", "numTraining": n_cases,
            "labels": {"background": 0, "disk": 1, "ignore": ignore}}))
    return root, dense, ignored
