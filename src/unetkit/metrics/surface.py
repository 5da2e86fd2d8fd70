"""Surface-distance metrics on binary masks with voxel spacing: HD95, HD, ASSD, surface Dice.

Definitions (distances in the units of ``spacing``, between voxel centres):

* The boundary of a mask is its set of voxels with at least one face neighbour (4-neighbourhood
  in 2D, 6 in 3D) outside the mask; voxels on the image border count as boundary. This is MONAI's
  and DeepMind's ``surface-distance`` voxel convention (``mask XOR erosion(mask)``).
* ``d(P->G)`` is the distance from each boundary voxel of ``P`` to the nearest boundary voxel of
  ``G``, likewise ``d(G->P)``.
* ``hausdorff = max(max d(P->G), max d(G->P))``;
  ``hd95 = max(q95 d(P->G), q95 d(G->P))`` (95th percentile of each direction, linear
  interpolation as ``numpy.percentile``, then the larger; MONAI's definition);
  ``assd = (sum d(P->G) + sum d(G->P)) / (|dP| + |dG|)``;
  ``surface_dice(tau) = (#{d(P->G) <= tau} + #{d(G->P) <= tau}) / (|dP| + |dG|)``
  (normalised surface Dice of Nikolov et al. counted in boundary voxels, MONAI's default).

Empty-case conventions:

* both masks empty: every surface metric is ``NaN`` (undefined, excluded from means);
* exactly one mask empty: ``hausdorff``, ``hd95`` and ``assd`` are the length of the image
  diagonal ``sqrt(sum((shape_i * spacing_i)^2))``, the largest distance the image can hold (a
  finite worst case, as the BraTS challenge does), and ``surface_dice`` is 0.

Speed: both masks are cropped to the bounding box of their union; boundaries are computed by
array shifts. Distances are exact Euclidean distances, from a scipy distance transform of the
boundary inside the box when the boundaries are dense, or from a KD-tree over boundary voxels
when they are sparse (the cheaper of the two; both give the same numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

from unetkit.metrics.confusion import check_pair, normalize_spacing

# The KD-tree is chosen when boundary voxels are fewer than this fraction of the box voxels.
# Measured crossover (EDT costs ~ box voxels, the tree ~ n log n boundary voxels): about 0.2 in
# 2D and 0.2-0.35 in 3D for smooth random shapes; spheres (fraction 0.04) are 4x faster by tree.
_KDTREE_FRACTION = 0.2


@dataclass
class SurfaceDistances:
    """Boundary-to-boundary distances of one pair of binary masks.

    Attributes:
        pred_to_gt: ``(|dP|,)`` float64 distances from prediction boundary voxels to the
            ground-truth boundary (empty array when either mask is empty).
        gt_to_pred: ``(|dG|,)`` float64 distances the other way.
        pred_empty: the prediction has no foreground voxel.
        gt_empty: the ground truth has no foreground voxel.
        diagonal: length of the image diagonal in physical units (the one-empty value).
    """

    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    pred_empty: bool
    gt_empty: bool
    diagonal: float

    @property
    def both_empty(self) -> bool:
        """True when neither mask has a foreground voxel."""
        return self.pred_empty and self.gt_empty

    @property
    def one_empty(self) -> bool:
        """True when exactly one mask is empty."""
        return self.pred_empty != self.gt_empty


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: foreground with a face neighbour in the background.

    Args:
        mask: bool array ``(*spatial)``; the outside of the array counts as background.

    Returns:
        bool array ``(*spatial)``, equal to ``mask ^ scipy.ndimage.binary_erosion(mask)``.
    """
    mask = np.asarray(mask, dtype=bool)
    interior = mask.copy()
    for axis in range(mask.ndim):
        lower = [slice(None)] * mask.ndim
        upper = [slice(None)] * mask.ndim
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        # a voxel is interior only if both neighbours along every axis are foreground
        interior[tuple(lower)] &= mask[tuple(upper)]
        interior[tuple(upper)] &= mask[tuple(lower)]
        edge = [slice(None)] * mask.ndim
        edge[axis] = 0
        interior[tuple(edge)] = False
        edge[axis] = -1
        interior[tuple(edge)] = False
    return mask & ~interior


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box containing every True voxel (mask must not be empty)."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _edt_distances(
    source: np.ndarray, target: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    """Distances from every True voxel of ``source`` to the nearest True voxel of ``target``."""
    return distance_transform_edt(~target, sampling=spacing)[source]


def _kdtree_distances(
    source: np.ndarray, target: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    scale = np.asarray(spacing)
    tree = cKDTree(np.argwhere(target) * scale, leafsize=32)
    return tree.query(np.argwhere(source) * scale, k=1)[0]


def surface_distances(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | float | None = None,
    method: str = "auto",
) -> SurfaceDistances:
    """Compute both directed boundary distance sets of two binary masks.

    Args:
        pred: binary mask ``(*spatial)`` (nonzero is foreground).
        gt: binary mask of the same shape.
        spacing: voxel size per axis (None: 1).
        method: ``"auto"``, ``"edt"`` (distance transform) or ``"kdtree"``.

    Returns:
        ``SurfaceDistances``; the distance arrays are empty if either mask is empty.
    """
    pred, gt = check_pair(pred, gt)
    pred, gt = pred.astype(bool, copy=False), gt.astype(bool, copy=False)
    spacing = normalize_spacing(spacing, pred.ndim)
    if method not in ("auto", "edt", "kdtree"):
        raise ValueError(f"method must be 'auto', 'edt' or 'kdtree', got {method!r}")
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing, strict=True)))
    pred_empty, gt_empty = not pred.any(), not gt.any()
    empty = np.zeros(0)
    if pred_empty or gt_empty:
        return SurfaceDistances(empty, empty, pred_empty, gt_empty, diagonal)
    box = _bounding_box(pred | gt)
    pred_edge, gt_edge = boundary(pred[box]), boundary(gt[box])
    sparse = np.count_nonzero(pred_edge) + np.count_nonzero(gt_edge)
    if method == "kdtree" or (method == "auto" and sparse < _KDTREE_FRACTION * pred_edge.size):
        directed = _kdtree_distances
    else:
        directed = _edt_distances
    return SurfaceDistances(
        pred_to_gt=directed(pred_edge, gt_edge, spacing),
        gt_to_pred=directed(gt_edge, pred_edge, spacing),
        pred_empty=False,
        gt_empty=False,
        diagonal=diagonal,
    )


def hausdorff_from_distances(distances: SurfaceDistances, percentile: float = 100.0) -> float:
    """Symmetric (percentile) Hausdorff distance from precomputed distances; see module doc."""
    if distances.both_empty:
        return float("nan")
    if distances.one_empty:
        return distances.diagonal
    return float(
        max(
            np.percentile(distances.pred_to_gt, percentile),
            np.percentile(distances.gt_to_pred, percentile),
        )
    )


def assd_from_distances(distances: SurfaceDistances) -> float:
    """Average symmetric surface distance from precomputed distances; see module doc."""
    if distances.both_empty:
        return float("nan")
    if distances.one_empty:
        return distances.diagonal
    total = distances.pred_to_gt.sum() + distances.gt_to_pred.sum()
    return float(total / (distances.pred_to_gt.size + distances.gt_to_pred.size))


def surface_dice_from_distances(distances: SurfaceDistances, tau: float) -> float:
    """Normalised surface Dice at tolerance ``tau`` from precomputed distances."""
    if tau < 0:
        raise ValueError(f"surface Dice tolerance tau must be >= 0, got {tau}")
    if distances.both_empty:
        return float("nan")
    if distances.one_empty:
        return 0.0
    close = np.count_nonzero(distances.pred_to_gt <= tau)
    close += np.count_nonzero(distances.gt_to_pred <= tau)
    return float(close / (distances.pred_to_gt.size + distances.gt_to_pred.size))


def hd95(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None
) -> float:
    """95th-percentile Hausdorff distance of two binary masks ``(*spatial)``."""
    return hausdorff_from_distances(surface_distances(pred, gt, spacing), 95.0)


def hausdorff(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None
) -> float:
    """Hausdorff distance (maximum) of two binary masks ``(*spatial)``."""
    return hausdorff_from_distances(surface_distances(pred, gt, spacing), 100.0)


def assd(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None
) -> float:
    """Average symmetric surface distance of two binary masks ``(*spatial)``."""
    return assd_from_distances(surface_distances(pred, gt, spacing))


def surface_dice(
    pred: np.ndarray,
    gt: np.ndarray,
    tau: float = 1.0,
    spacing: Sequence[float] | float | None = None,
) -> float:
    """Normalised surface Dice of two binary masks ``(*spatial)`` at tolerance ``tau``."""
    return surface_dice_from_distances(surface_distances(pred, gt, spacing), tau)
