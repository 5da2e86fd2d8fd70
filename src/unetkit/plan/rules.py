"""The planner's rules: pure functions from a fingerprint to config values, each with a reason.

Every rule returns ``Decision`` rows (``field``, ``value``, ``reason``); ``unetkit.plan.planner``
applies them to a config, prints them and stores them in ``plan.yaml``. Where a rule follows
nnU-Net (target spacing, pooling per axis, normalisation per modality) its docstring says so;
where it departs (a CPU time budget instead of GPU memory) it says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetkit.plan.fingerprint import Fingerprint

# Neighbouring slices on each side as channels. Hippocampus, 15 min: held-out mean Dice 0.8744
# against 0.8738 without (one run each, results/peers_hip_25d and _nchw): not shown to exceed
# run-to-run noise; kept because it did not score lower (docs/planner.md).
SLICE_CONTEXT = 1
THIN_SLAB_RATIO = 3.0  # an axis this many times coarser (and with few voxels): 2D on slices
ANISOTROPY = 2.0  # pool/convolve an axis only once its spacing is within this of the finest
MIN_FEATURE = {2: 4, 3: 4}  # smallest feature-map size a pooling may produce (nnU-Net's 4)
MAX_DEPTH = 5
MAX_WIDTH = {2: 512, 3: 320}  # nnU-Net's caps
PATCH_VOXELS = {2: 256 * 256, 3: 96 * 96 * 64}  # largest patch a CPU step should see
BATCH_VOXELS = {2: 8 * 256 * 256, 3: 4 * 40 * 56 * 40}  # voxels per training step


@dataclass(frozen=True)
class Decision:
    """One planned value: ``field`` (dotted config path) = ``value``, because ``reason``."""

    field: str
    value: Any
    reason: str


def slice_axis(fp: Fingerprint) -> int:
    """The axis 2D slices are taken across: the coarsest, ties to the one with fewest voxels."""
    spacing, shape = np.asarray(fp.median_spacing), np.asarray(fp.median_shape)
    return int(min(range(3), key=lambda a: (-round(spacing[a], 3), shape[a], a)))


def _slice_context() -> Decision:
    return Decision("data.slice_context", SLICE_CONTEXT,
                    f"2.5D: each slice with {SLICE_CONTEXT} neighbour(s) on either side as "
                    "channels, so the 2D network sees the structure across slices too (its "
                    "measured gain is within run-to-run noise: docs/planner.md)")


def dimensionality(fp: Fingerprint, slices: bool = False) -> list[Decision]:
    """2D data: 2D. Volumes: 3D, or 2D on slices across an axis that is both much coarser than
    the others (``THIN_SLAB_RATIO``) and short (fewer voxels than a quarter of the others):
    a 3D network would see almost no context along it (nnU-Net's 2d configuration).
    ``slices``: the 2D-on-slices alternative for any volume (the budget decides between them,
    ``unetkit.plan.planner``)."""
    if fp.spatial_dims == 2:
        return [Decision("model.spatial_dims", 2, "2D images")]
    if slices:
        axis = slice_axis(fp)
        reason = (f"2D network on the slices across axis {axis}: a budget that affords too few "
                  "3D steps trains a 2D network further (hippocampus, 15 CPU minutes: mean "
                  "Dice 0.874 in 2D against 0.820 in 3D)")
        return [Decision("model.spatial_dims", 2, reason),
                Decision("data.slice_axis", axis, reason), _slice_context()]
    spacing, shape = np.asarray(fp.median_spacing), np.asarray(fp.median_shape)
    thick = int(np.argmax(spacing))
    others = [a for a in range(3) if a != thick]
    ratio = spacing[thick] / spacing[others].max()
    if ratio >= THIN_SLAB_RATIO and shape[thick] * 4 <= shape[others].min():
        reason = (f"thin-slab volumes: axis {thick} is {ratio:.1f}x coarser "
                  f"({spacing[thick]:g} vs {spacing[others].max():g}) and has "
                  f"{shape[thick]:g} voxels: 2D network on slices across it")
        return [Decision("model.spatial_dims", 2, reason),
                Decision("data.slice_axis", thick, reason), _slice_context()]
    return [Decision("model.spatial_dims", 3, f"volumes, spacing {_fmt(spacing)}: 3D network")]


def target_spacing(fp: Fingerprint, slice_axis: int | None) -> list[Decision]:
    """The median spacing per axis when the cases' spacings differ (nnU-Net); for strongly
    anisotropic data the thick axis takes its 10th percentile instead of the median (nnU-Net),
    so thin-slice cases are not blurred; none when every case has the same spacing."""
    spacings = np.asarray(fp.spacings, dtype=float)
    if np.allclose(spacings, spacings[0], rtol=1e-3):
        return [Decision("data.target_spacing", None,
                         f"every case has spacing {_fmt(spacings[0])}: no resampling")]
    target = np.median(spacings, axis=0)
    thick = int(np.argmax(target))
    if target[thick] >= ANISOTROPY * np.delete(target, thick).max():
        target[thick] = np.percentile(spacings[:, thick], 10)
    values: list[float | None] = [round(float(t), 4) for t in target]
    if slice_axis is not None:
        values[slice_axis] = None
    return [Decision("data.target_spacing", values,
                     f"spacings differ between cases ({_fmt(spacings.min(0))} .. "
                     f"{_fmt(spacings.max(0))}): resample to the median")]


def normalization(fp: Fingerprint) -> list[Decision]:
    """nnU-Net's schemes: CT -> clip to the foreground's 0.5-99.5 percentiles, z-score with the
    foreground's mean/std (fitted on the training set); MRI and other volumes -> z-score per
    image; 8-bit photographs and micrographs -> z-score per image and channel."""
    if fp.modality == "ct":
        return [Decision("data.normalization.scheme", "ct",
                         "CT: clip to the foreground's 0.5-99.5 percentiles, then z-score with "
                         "the foreground's mean and std (Hounsfield units mean the same in "
                         "every scan)")]
    why = {"mri": "MRI: intensities have no fixed scale between scans",
           "rgb-8bit": "8-bit RGB images: per channel",
           "grey-8bit": "8-bit grey images"}.get(fp.modality, "no known intensity scale")
    return [Decision("data.normalization.scheme", "zscore", f"z-score per image ({why})")]


def _fmt(values: Any) -> str:
    return "x".join(f"{float(v):g}" for v in values)


def planning_grid(fp: Fingerprint, target: Any, slice_axis: int | None
                  ) -> tuple[list[float], list[float]]:
    """``(shape, spacing)`` of the median case at the ``target`` spacing (None entries or None:
    the median spacing), the ``slice_axis`` left out: what a patch is cut from."""
    target = target or list(fp.median_spacing)
    spacing = [t if t is not None else s for t, s in zip(target, fp.median_spacing, strict=True)]
    shape = [n * s / t for n, s, t in zip(fp.median_shape, fp.median_spacing, spacing,
                                          strict=True)]
    if slice_axis is not None:
        shape = [n for a, n in enumerate(shape) if a != slice_axis]
        spacing = [s for a, s in enumerate(spacing) if a != slice_axis]
    return shape, spacing


def case_voxels(fp: Fingerprint, target: Any) -> float:
    """Voxels of the median case at the ``target`` spacing (what training samples from)."""
    target = target or fp.median_spacing
    return math.prod(n * s / (t or s) for n, s, t in zip(fp.median_shape, fp.median_spacing,
                                                          target, strict=True))


def network_shape(shape: Any, spacing: Any, dims: int, max_voxels: int | None = None
                  ) -> list[Decision]:
    """Patch size, poolings per axis, kernel sizes (nnU-Net's rules, for CPU-sized patches).

    The patch is the median (resampled) image rounded up to what the network accepts, shrunk
    along its longest physical axis until it holds at most ``max_voxels`` (``PATCH_VOXELS``
    by default). An axis is pooled while its feature map stays at least ``MIN_FEATURE`` voxels
    and its spacing is within ``ANISOTROPY`` of the finest; its kernels are 1 until then (no
    mixing across thick slices).
    """
    max_voxels = max_voxels or PATCH_VOXELS[dims]
    patch = [max(int(math.ceil(n)), MIN_FEATURE[dims]) for n in shape]
    spacing = [float(s) for s in spacing]
    while math.prod(patch) > max_voxels:
        axis = max(range(dims), key=lambda a: patch[a] * spacing[a])
        patch[axis] = max(MIN_FEATURE[dims] * 2, int(patch[axis] * 0.9))
    strides, kernels, sizes, current = [], [], list(patch), list(spacing)
    kernels.append([3 if s <= ANISOTROPY * min(current) else 1 for s in current])
    while len(strides) < MAX_DEPTH:
        step = [2 if sizes[a] // 2 >= MIN_FEATURE[dims] and current[a] <= ANISOTROPY *
                min(current) else 1 for a in range(dims)]
        if not any(s == 2 for s in step):
            break
        strides.append(step)
        sizes = [n // s for n, s in zip(sizes, step, strict=True)]
        current = [c * s for c, s in zip(current, step, strict=True)]
        kernels.append([3 if c <= ANISOTROPY * min(current) else 1 for c in current])
    multiples = [math.prod(s[a] for s in strides) for a in range(dims)]
    patch = [int(math.ceil(n / m) * m) for n, m in zip(patch, multiples, strict=True)]
    isotropic = all(s == [2] * dims for s in strides) and all(k == [3] * dims for k in kernels)
    decisions = [
        Decision("data.patch_size", patch, f"median image {_fmt(shape)} rounded up to what the "
                 f"network accepts, at most {max_voxels:,} voxels"),
        Decision("model.depth", len(strides), f"pool while feature maps keep >= "
                 f"{MIN_FEATURE[dims]} voxels per axis"),
    ]
    if not isotropic:
        reason = "anisotropic spacing: pool and convolve a coarse axis only once comparable"
        decisions += [Decision("model.strides", strides, reason),
                      Decision("model.kernel_sizes", kernels, reason)]
    return decisions


def batch_size(patch: Any, dims: int) -> Decision:
    """Patches per step so that a step sees about ``BATCH_VOXELS`` voxels (at least 2)."""
    size = max(2, min(32, int(round(BATCH_VOXELS[dims] / math.prod(patch)))))
    return Decision("data.batch_size", size, f"about {BATCH_VOXELS[dims]:,} voxels per step")


def widths(base: int, depth: int, dims: int) -> list[int]:
    """Channels per stage: ``base * 2**i`` capped at nnU-Net's maximum."""
    return [min(base * 2**i, MAX_WIDTH[dims]) for i in range(depth + 1)]


VALIDATION_SHARE = 0.05  # of the training time spent validating at most


def validation_period(step_s: float, steps_per_epoch: int, val_voxels: float, passes: int,
                      step_voxels: int) -> Decision:
    """Validate every ``n`` epochs so that validation costs at most ``VALIDATION_SHARE`` of the
    training time (a forward pass counted at half a training step per voxel, TTA included);
    the last epoch always validates. Hippocampus, 16 cases with 8 mirrorings: ~22 s per
    validation against ~100 s per epoch of training."""
    val_s = 0.5 * step_s * val_voxels * passes / max(step_voxels, 1)
    epoch_s = step_s * steps_per_epoch
    every = max(1, math.ceil(val_s / (VALIDATION_SHARE * epoch_s))) if val_voxels else 1
    return Decision("train.val_every", every, f"a validation costs about {val_s:.0f} s, an "
                    f"epoch {epoch_s:.0f} s: validate every {every} epoch(s) (at most "
                    f"{100 * VALIDATION_SHARE:.0f}% of the time) and at the end")
