"""Procedural data sets with exact ground truth, for the demo and the tests.

* ``make_cells``: EM-like 2-D images of touching irregular cells (a warped, weighted Voronoi
  tessellation) with thin dark membranes (2-4 px), dark organelles inside the cells, blur,
  uneven illumination and noise.  Binary task: 1 = membrane (as in ISBI 2012); multi-class:
  0 = cytoplasm, 1 = membrane, 2 = organelle.
* ``make_blobs_3d``: bright ellipsoids in a noisy volume, one label per blob class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

CELL_LABELS = {0: "background", 1: "membrane"}
CELL_LABELS_MULTICLASS = {0: "cytoplasm", 1: "membrane", 2: "organelle"}


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to [-1, 1]."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (np.abs(field).max() + 1e-12)


def cell_labels(size: Sequence[int], rng: np.random.Generator, cell_size: float = 30.0
                ) -> np.ndarray:
    """Instance map ``(H, W)`` of touching irregular cells (warped, weighted Voronoi)."""
    height, width = size
    step = cell_size
    ys, xs = np.meshgrid(np.arange(-step / 2, height + step, step),
                         np.arange(-step / 2, width + step, step), indexing="ij")
    seeds = np.stack([ys.ravel(), xs.ravel()], 1) + rng.uniform(-0.4, 0.4, (ys.size, 2)) * step
    weights = rng.uniform(-0.25, 0.25, len(seeds)) * step
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    warp = 0.18 * step
    points = np.stack([yy + warp * _smooth_noise(rng, size, step / 3),
                       xx + warp * _smooth_noise(rng, size, step / 3)], -1).reshape(-1, 2)
    distance, index = cKDTree(seeds).query(points, k=4)
    best = np.argmin(distance - weights[index], axis=1)
    return index[np.arange(len(best)), best].reshape(height, width)


def _membranes(instances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boundaries between instances, 2 px thick, 4 px where a smooth random map says so."""
    boundary = ndimage.maximum_filter(instances, 3) != ndimage.minimum_filter(instances, 3)
    thick = _smooth_noise(rng, instances.shape, 8.0) > 0.1
    return boundary | (ndimage.binary_dilation(boundary) & thick)


def _organelles(instances: np.ndarray, membrane: np.ndarray, rng: np.random.Generator
                ) -> np.ndarray:
    """Small round dark bodies inside cells, kept 3 px away from membranes."""
    height, width = instances.shape
    yy, xx = np.ogrid[:height, :width]
    bodies = np.zeros(instances.shape, dtype=bool)
    for _ in range(int(height * width / 1500)):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.uniform(2.5, 5.0), rng.uniform(2.5, 5.0)
        bodies |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    far = ndimage.distance_transform_edt(~membrane) > 3
    return bodies & far


def make_cells(size: Sequence[int] = (256, 256), seed: int = 0, multiclass: bool = False,
               noise: float = 0.05, blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One EM-like image of touching cells with exact labels.

    Returns:
        image ``(1, H, W)`` float32 in [0, 1] (membranes dark, cytoplasm light) and mask
        ``(H, W)`` int64: 1 = membrane (binary) or 0/1/2 = cytoplasm/membrane/organelle.
    """
    rng = np.random.default_rng(seed)
    size = tuple(int(s) for s in size)
    instances = cell_labels(size, rng)
    membrane = _membranes(instances, rng)
    organelle = _organelles(instances, membrane, rng)
    cell_tone = rng.uniform(0.6, 0.85, instances.max() + 1)
    image = cell_tone[instances] + 0.04 * _smooth_noise(rng, size, 1.5)
    image[organelle] = rng.uniform(0.38, 0.45)
    image[membrane] = 0.12 + 0.08 * rng.random(int(membrane.sum()))
    image = ndimage.gaussian_filter(image, blur)
    image *= 1.0 + 0.2 * _smooth_noise(rng, size, max(size) / 4)
    image += noise * rng.standard_normal(size)
    mask = membrane.astype(np.int64)
    if multiclass:
        mask[organelle] = 2
    return np.clip(image, 0, 1).astype(np.float32)[None], mask


def make_blobs_3d(size: Sequence[int] = (48, 48, 48), seed: int = 0, num_classes: int = 2,
                  n_blobs: int = 6, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A volume of bright ellipsoids; blob ``i`` gets label ``1 + i % (num_classes - 1)``.

    Returns:
        image ``(1, D, H, W)`` float32 and mask ``(D, H, W)`` int64 with labels ``0..K-1``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    size = tuple(int(s) for s in size)
    grids = np.ogrid[tuple(slice(0, s) for s in size)]
    mask = np.zeros(size, dtype=np.int64)
    for blob in range(n_blobs):
        center = [rng.uniform(0.2, 0.8) * s for s in size]
        radii = [rng.uniform(0.08, 0.2) * min(size) for _ in size]
        terms = zip(grids, center, radii, strict=True)
        inside = sum(((g - c) / r) ** 2 for g, c, r in terms) <= 1.0
        mask[inside] = 1 + blob % (num_classes - 1)
    tones = np.concatenate([[0.2], np.linspace(0.6, 1.0, num_classes - 1)])
    image = ndimage.gaussian_filter(tones[mask], 1.0) + noise * rng.standard_normal(size)
    return image.astype(np.float32)[None], mask


def stained(image: np.ndarray) -> np.ndarray:
    """A ``(1, H, W)`` [0, 1] cells image as an H&E-like photograph ``(3, H, W)`` uint8:
    dark structures in haematoxylin purple, light ones in eosin pink (for colour tests)."""
    dark, light = np.array([72, 38, 120.0]), np.array([242, 178, 212.0])
    rgb = dark[:, None, None] + (light - dark)[:, None, None] * np.clip(image[0], 0, 1)
    return np.round(rgb).astype(np.uint8)


def write_cells_dataset(out_dir: str | Path, n_cases: int, size: Sequence[int] = (256, 256),
                        seed: int = 0, multiclass: bool = False, rgb: bool = False) -> Path:
    """Write ``images/cell_NNN.png`` (8-bit grey, or with ``rgb`` an H&E-like colour
    photograph: ``stained``), ``masks/cell_NNN.png`` (labels) and a ``dataset.json``; case
    ``i`` is ``make_cells(size, seed=seed * 100_003 + i)``.
    """
    from unetkit.data.io import write_image, write_mask

    out_dir = Path(out_dir)
    for i in range(n_cases):
        image, mask = make_cells(size, seed=seed * 100_003 + i, multiclass=multiclass)
        write_image(out_dir / "images" / f"cell_{i:03d}.png",
                    stained(image) if rgb else np.round(image * 255).astype(np.uint8))
        write_mask(out_dir / "masks" / f"cell_{i:03d}.png", mask)
    labels = CELL_LABELS_MULTICLASS if multiclass else CELL_LABELS
    channels = {"0": "R", "1": "G", "2": "B"} if rgb else {"0": "EM"}
    meta = {"name": "synthetic cells", "channel_names": channels,
            "labels": {name: value for value, name in labels.items()},
            "numTraining": n_cases, "file_ending": ".png"}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def write_blobs_dataset(out_dir: str | Path, n_cases: int, size: Sequence[int] = (32, 40, 28),
                        spacing: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0,
                        num_classes: int = 3, channels: int = 1, modality: str = "MRI",
                        scale: float = 1.0, shift: float = 0.0) -> Path:
    """Write an nnU-Net-layout 3D data set of ``make_blobs_3d`` volumes as NIfTI.

    ``imagesTr/blobs_NNN_000C.nii.gz`` (``channels`` files per case; channel ``c`` is the
    image times ``1 + c``), ``labelsTr/blobs_NNN.nii.gz`` and ``dataset.json``; intensities are
    ``image * scale + shift`` (e.g. CT-like Hounsfield values), voxel ``spacing`` in the affine.
    A ``spacing`` entry may be a list per case (mixed spacings).
    """
    import nibabel as nib

    out_dir = Path(out_dir)
    (out_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        image, mask = make_blobs_3d(size, seed=seed * 100_003 + i, num_classes=num_classes)
        case_spacing = spacing[i % len(spacing)] if isinstance(spacing[0], Sequence) \
            else spacing
        affine = np.diag([*(float(s) for s in case_spacing), 1.0])
        for c in range(channels):
            data = (image[0] * (1 + c) * scale + shift).astype(np.float32)
            nib.save(nib.Nifti1Image(data, affine),
                     out_dir / "imagesTr" / f"blobs_{i:03d}_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine),
                 out_dir / "labelsTr" / f"blobs_{i:03d}.nii.gz")
    labels = {"background": 0, **{f"blob{k}": k for k in range(1, num_classes)}}
    meta = {"name": "synthetic blobs", "channel_names": {str(c): modality
                                                         for c in range(channels)},
            "labels": labels, "numTraining": n_cases, "file_ending": ".nii.gz"}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out_dir
