"""Nested regions with exact ground truth (BraTS-like), for region-based training.

``make_nested(shape, rng)`` draws concentric discs (2D) or balls (3D): label 3 in the core, 2 in
the shell around it, 1 in the outer shell, so that the regions ``whole = {1, 2, 3}``, ``core =
{2, 3}`` and ``enhancing = {3}`` are nested as BraTS' whole tumour, tumour core and enhancing
tumour. The image's mean intensity is the label value (plus noise), so every boundary is visible.
``write_nested_dataset`` writes them in nnU-Net's layout with the regions in ``dataset.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

NESTED_LABELS = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                 "enhancing_tumor": 3}
NESTED_ORDER = [1, 2, 3]


def make_nested(shape: Sequence[int], rng: np.random.Generator, count: int = 2,
                noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(1, *shape)`` float32 and its mask ``(*shape)`` uint8 of ``count`` nested
    objects (outer radius a fifth to a third of the shortest side; the shells in between are
    at least one voxel thick)."""
    grid = np.indices(shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    side = min(shape)
    for _ in range(count):
        outer = rng.uniform(side / 5, side / 3)
        centre = [rng.uniform(outer, n - outer) for n in shape]
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
        for label, radius in ((1, outer), (2, 0.65 * outer), (3, 0.3 * outer)):
            mask[distance <= max(radius, 1.0)] = label
    image = mask.astype(np.float32) + rng.normal(0.0, noise, shape).astype(np.float32)
    return image[None], mask


def write_nested_dataset(out_dir: str | Path, n_cases: int, shape: Sequence[int] = (32, 32),
                         seed: int = 0, labels: dict | None = None,
                         order: list[int] | None = NESTED_ORDER) -> Path:
    """Write an nnU-Net folder (``imagesTr/nested_NNN_0000.nii.gz``, ``labelsTr/``,
    ``dataset.json`` with ``labels`` and ``regions_class_order``, default the BraTS-like
    ``NESTED_LABELS`` / ``NESTED_ORDER``; None leaves the order out) of 2D or 3D ``shape``."""
    import nibabel as nib

    out = Path(out_dir)
    for folder in ("imagesTr", "labelsTr"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    for i in range(n_cases):
        image, mask = make_nested(shape, rng)
        name = f"nested_{i:03d}"
        nib.save(nib.Nifti1Image(image[0], affine), out / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), out / "labelsTr" / f"{name}.nii.gz")
    meta = {"name": "synthetic nested regions", "channel_names": {"0": "MRI"},
            "labels": labels or NESTED_LABELS, "numTraining": n_cases,
            "file_ending": ".nii.gz"}
    if order is not None:
        meta["regions_class_order"] = order
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))  # keys in order (nnU-Net)
    return out
