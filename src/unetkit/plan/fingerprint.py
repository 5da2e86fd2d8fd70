"""A data set's fingerprint: what the planner needs to know, read once from every case.

Per case (``case_fingerprint``, pure): spatial shape, spacing, channels, storage type, intensity
samples (all voxels and foreground voxels, per channel), voxels per label, and the shape of the
foreground: its typical width (twice the median distance to the background along the ridges of
the foreground, i.e. at local maxima of its distance transform: the local diameter),
how many objects it forms, and whether it walls off regions of background (cell membranes
enclose cells; vessels and organs do not). Per data set (``fingerprint_dataset``): the same
summarised (medians, percentiles), the modality (from ``dataset.json`` ``channel_names`` or
inferred: 8-bit RGB photographs, 8-bit grey micrographs, CT's Hounsfield range, other volumes)
and, for 2D data, how far the masks lie off the images (``unetkit.data.offset``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.data.dataset import (
    discover_cases,
    load_case,
    read_dataset_json,
    require_same_layout,
)
from unetkit.data.declared import declare_labels
from unetkit.data.ignore import split_ignored, unscaled
from unetkit.data.offset import MAX_SHIFT, case_offset, median_offset

SAMPLES = 20_000  # intensity samples per case and channel
OFFSET_CASES = 20  # cases measured for the mask offset (2D only)
_CT = re.compile(r"\bct\b|computed tomography", re.IGNORECASE)
_MR = re.compile(r"\bmri?\b|\bt1|\bt2|flair|adc|dwi|\bpd\b|magnetic", re.IGNORECASE)


@dataclass
class CaseFingerprint:
    """What one case tells the planner (see the module docstring)."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    channels: int
    dtype: str
    samples: np.ndarray  # (C, N) intensities, evenly spaced over the image
    foreground_samples: np.ndarray  # (C, M) intensities inside the foreground
    label_voxels: dict[int, int]
    foreground_width: float  # voxels; 0 when there is no foreground
    objects: int  # connected foreground components
    enclosed_fraction: float  # background share that does not reach the image border
    offset: tuple[float, ...] | None = None


def _sample(values: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced entries of the last axis of ``(C, N)``."""
    step = max(1, values.shape[1] // count)
    return np.asarray(values[:, ::step][:, :count], dtype=np.float32)


def _foreground_shape(foreground: np.ndarray) -> tuple[float, int, float]:
    """``(width, objects, enclosed background fraction)`` of a boolean foreground map."""
    if not foreground.any():
        return 0.0, 0, 0.0
    distance = ndimage.distance_transform_edt(foreground)
    ridge = foreground & (distance >= ndimage.maximum_filter(distance, size=3))
    width = 2.0 * float(np.median(distance[ridge]))
    structure = ndimage.generate_binary_structure(foreground.ndim, 1)
    objects = int(ndimage.label(foreground, structure)[1])
    background = ~foreground
    regions, count = ndimage.label(background, structure)
    if count == 0:
        return width, objects, 0.0
    border = np.zeros_like(background)
    for axis in range(background.ndim):
        index = [slice(None)] * background.ndim
        for end in (0, -1):
            index[axis] = end
            border[tuple(index)] = True
    touching = np.unique(regions[border & background])
    enclosed = background & ~np.isin(regions, touching)
    return width, objects, float(enclosed.sum() / max(background.sum(), 1))


def case_fingerprint(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
                     dtype: str = "float32", measure_offset: bool = False) -> CaseFingerprint:
    """Fingerprint of one case: ``image (C, *S)``, ``mask (*S)`` integer labels."""
    flat = image.reshape(image.shape[0], -1)
    foreground = mask > 0
    labels, counts = np.unique(mask, return_counts=True)
    width, objects, enclosed = _foreground_shape(foreground)
    offset = tuple(case_offset(image, mask)) if measure_offset and foreground.any() else None
    return CaseFingerprint(
        shape=tuple(int(n) for n in mask.shape), spacing=tuple(float(s) for s in spacing),
        channels=int(image.shape[0]), dtype=dtype, samples=_sample(flat, SAMPLES),
        foreground_samples=_sample(flat[:, foreground.ravel()], SAMPLES),
        label_voxels={int(k): int(v) for k, v in zip(labels, counts, strict=True)},
        foreground_width=width, objects=objects, enclosed_fraction=enclosed, offset=offset)


@dataclass
class Fingerprint:
    """A data set summarised for planning; ``as_dict()`` is what ``plan.yaml`` and the run
    folder's ``fingerprint.json`` hold."""

    cases: int
    spatial_dims: int
    channels: int
    modality: str  # "ct", "mri", "rgb-8bit", "grey-8bit", "other"
    channel_names: list[str] | None
    shapes: list[tuple[int, ...]]
    spacings: list[tuple[float, ...]]
    median_shape: tuple[float, ...]
    median_spacing: tuple[float, ...]
    intensity: list[dict[str, float]]  # per channel: percentiles over all voxels
    foreground_intensity: list[dict[str, float]]  # per channel: over foreground voxels
    label_fractions: dict[int, float]  # voxel share of each label
    foreground_width: float  # median over cases, voxels
    objects_per_case: float  # median
    enclosed_fraction: float  # median share of background walled off by the foreground
    offset: list[float] | None = None  # median mask offset (2D), voxels, when consistent
    labels: dict[int, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # overlapping regions of dataset.json ([{"name", "labels"}, ...]) and the labels they paint
    regions: list[dict[str, Any]] | None = None
    regions_class_order: list[int] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe dict (no per-case lists of samples)."""
        out = asdict(self)
        out["shapes"] = [list(s) for s in self.shapes]
        out["spacings"] = [list(s) for s in self.spacings]
        out["label_fractions"] = {str(k): v for k, v in self.label_fractions.items()}
        out["labels"] = {str(k): v for k, v in (self.labels or {}).items()}
        return out


def _stats(samples: np.ndarray) -> dict[str, float]:
    values = samples[np.isfinite(samples)]
    if values.size == 0:
        return {}
    p = np.percentile(values, [0.5, 50.0, 99.5])
    return {"p0.5": float(p[0]), "p50": float(p[1]), "p99.5": float(p[2]),
            "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def infer_modality(channel_names: list[str] | None, dtype: str, channels: int,
                   low: float, spatial_dims: int) -> str:
    """``"ct"``, ``"mri"``, ``"rgb-8bit"``, ``"grey-8bit"`` or ``"other"``.

    ``dataset.json`` names win (nnU-Net's ``channel_names``: "CT", "MRI", "T2", ...); else an
    8-bit image is a photograph or micrograph, and a volume whose values reach -500 or below is
    CT (air is about -1000 HU).
    """
    names = " ".join(channel_names or [])
    if _CT.search(names):
        return "ct"
    if _MR.search(names):
        return "mri"
    if dtype == "uint8":
        return "rgb-8bit" if channels == 3 else "grey-8bit"
    if spatial_dims == 3 and low <= -500:
        return "ct"
    return "other"


def summarise(records: list[CaseFingerprint], channel_names: list[str] | None = None,
              labels: dict[int, str] | None = None) -> Fingerprint:
    """The data-set fingerprint of per-case fingerprints."""
    if not records:
        raise ValueError("a fingerprint needs at least one case")
    samples = np.concatenate([r.samples for r in records], axis=1)
    foreground = np.concatenate([r.foreground_samples for r in records], axis=1)
    totals: dict[int, int] = {}
    for record in records:
        for label, count in record.label_voxels.items():
            totals[label] = totals.get(label, 0) + count
    voxels = sum(totals.values()) or 1
    intensity = [_stats(row) for row in samples]
    dims = len(records[0].shape)
    dtypes = {r.dtype for r in records}
    dtype = "uint8" if dtypes == {"uint8"} else sorted(dtypes)[0]
    offsets = [list(r.offset) for r in records if r.offset is not None]
    offset = consistent_offset(offsets)
    return Fingerprint(
        cases=len(records), spatial_dims=dims, channels=records[0].channels,
        modality=infer_modality(channel_names, dtype, records[0].channels,
                                intensity[0].get("p0.5", 0.0), dims),
        channel_names=channel_names, shapes=[r.shape for r in records],
        spacings=[r.spacing for r in records],
        median_shape=tuple(float(v) for v in np.median([r.shape for r in records], axis=0)),
        median_spacing=tuple(float(v) for v in np.median([r.spacing for r in records], axis=0)),
        intensity=intensity, foreground_intensity=[_stats(row) for row in foreground],
        label_fractions={k: v / voxels for k, v in sorted(totals.items())},
        foreground_width=float(np.median([r.foreground_width for r in records])),
        objects_per_case=float(np.median([r.objects for r in records])),
        enclosed_fraction=float(np.median([r.enclosed_fraction for r in records])),
        offset=offset, labels=labels, extra={"case_offsets": offsets})


def consistent_offset(offsets: list[list[float]], agree: float = 0.25,
                      share: float = 0.8) -> list[float] | None:
    """The median mask offset when it is measured inside the search range and at least
    ``share`` of the cases lie within ``agree`` voxels of it; else None (no consistent offset:
    a structure without a clear edge contrast, or masks that are simply not offset)."""
    if not offsets:
        return None
    values = np.asarray(offsets, dtype=float)
    median = np.asarray(median_offset(values))
    if np.any(np.abs(median) >= MAX_SHIFT - 0.05):
        return None  # the peak sits at the edge of the search: not found
    close = np.all(np.abs(values - median) <= agree, axis=1)
    return [float(v) for v in median] if close.mean() >= share else None


def fingerprint_dataset(data_dir: str | Path,
                        progress: Callable[[int, int], None] | None = None,
                        ignore_label: int | None = None) -> Fingerprint:
    """Read every case of a data folder once and summarise it (``progress(done, total)``).

    Unlabelled pixels (``ignore_label``, else dataset.json's ``ignore`` label:
    ``unetkit.data.ignore``) are background to the shape statistics and left out of the label
    shares; the ignore label is no class of the fingerprint. The overlapping regions of
    dataset.json (``unetkit.data.regions``) are recorded, their labels among the classes
    (``unetkit.data.declared``, as training and the doctor read them)."""
    declared = declare_labels(data_dir, ignore_label=ignore_label)  # before any case is read
    cases = discover_cases(data_dir)
    _, channel_names = read_dataset_json(data_dir)
    ignore = declared.ignore
    records, first = [], None
    for index, case in enumerate(cases):
        image, mask, geometry = load_case(case)
        first = first or (case, image)
        require_same_layout(case, image, *first)
        mask, ignored = split_ignored(unscaled(mask, case.mask_path, ignore), ignore)
        dtype = str(geometry.extra.get("dtype", image.dtype))
        record = case_fingerprint(image, mask, geometry.spacing, dtype,
                                  measure_offset=mask.ndim == 2 and index < OFFSET_CASES)
        if ignored is not None:
            record.label_voxels[0] -= int(ignored.sum())
        records.append(record)
        if progress is not None:
            progress(index + 1, len(cases))
    fingerprint = summarise(records, channel_names, declared.classes)
    if declared.regions is not None:
        fingerprint.regions = [region.model_dump() for region in declared.regions.regions]
        fingerprint.regions_class_order = list(declared.regions.order)
    return fingerprint
