"""The dataset doctor: read every case once and report ALL problems, each naming its file.

Nothing on disk is modified.  Errors make a data set unusable as is (unpaired files, shape or
geometry mismatch, unreadable files, labels outside the declared set, anti-aliased or colour masks
without a palette, non-finite intensities, an empty or all-background data set); warnings are
things unetkit fixes on the fly (0/255 masks, grey masks stored as RGB, palette-mapped colours) or
that look suspicious (lossy JPEG masks, masks without foreground, cases whose spacing or
orientation differs from the others': ``unetkit.data.consistency``). Regions of interest
(``unetkit.data.roi``) are checked like masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.consistency import check_consistency, class_totals
from unetkit.data.dataset import Case, DatasetError, scan_dataset
from unetkit.data.declared import DeclaredLabels, declare_labels
from unetkit.data.geometry import format_tuple, geometry_mismatch, length_unit, unreadable
from unetkit.data.ignore import labelled_summary
from unetkit.data.io import Geometry, read_image, read_mask, split_suffix
from unetkit.data.mask_checks import looks_antialiased
from unetkit.data.roi import check_roi

_SAMPLES_PER_CASE = 20_000
_PERCENTILES = (0.5, 50.0, 99.5)


@dataclass
class DoctorReport:
    """Result of ``check_dataset``: ``errors`` and ``warnings`` are messages naming a file."""

    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def summary_rows(self) -> list[tuple[str, str]]:
        """The summary as ``(name, value)`` text rows for printing."""
        s = self.summary
        rows = [("cases", str(s.get("case_count", 0)))]
        if s.get("roi_dir"):
            rows.append(("regions of interest", s["roi_dir"]))
        for key, name in (("channels", "channels"), ("spatial_dims", "spatial dims")):
            if key in s:
                rows.append((name, str(s[key])))
        element = "pixels" if s.get("spatial_dims") == 2 else "voxels"
        if "size" in s:
            rows.append(("size (min / median / max)",
                         " / ".join(format_tuple(v) for v in s["size"].values()) + f" {element}"))
        if "spacing" in s:
            rows.append(_spacing_row(s["spacing"], s.get("spacing_unit", ""), element))
        for channel, stats in enumerate(s.get("intensity", [])):
            text = ", ".join(f"{k} {v:.4g}" for k, v in stats.items())
            rows.append((f"intensity ch{channel}", text))
        for label, freq in s.get("class_frequencies", {}).items():
            rows.append((f"class {label}", f"{100 * freq['voxel_fraction']:.2f}% of {element}, "
                         f"in {freq['cases']} cases"))
        if s.get("labelled"):  # sparse annotations: the share of each mask that is labelled
            rows.append(("ignore label", f"{s['ignore_label']} (class frequencies above are "
                         f"of the labelled {element})"))
            rows += [(f"labelled {case}", f"{100 * share:.2f}% of {element}")
                     for case, share in s["labelled"].items()]
        for region in s.get("regions", []):
            values = ", ".join(map(str, region["labels"]))
            rows.append((f"region {region['name']}", f"labels {values}; predictions paint "
                         f"label {region['painted']} (in this order)"))
        return rows


def _spacing_row(spacing: dict[str, tuple[float, ...]], unit: str, element: str
                 ) -> tuple[str, str]:
    """The summary's spacing, with its unit (``unetkit.data.geometry.length_unit``): none
    stored, millimetres, a unit the files do not state, or units that differ between cases."""
    if unit in ("pixels", "voxels"):
        return "spacing", f"none stored in the files: sizes and distances count {element}"
    values = " / ".join(format_tuple(v) for v in spacing.values())
    says = {"mm": "mm", "spacing units": "(the files state no unit)"}.get(
        unit, "(units differ between cases: millimetres in some, none stated in others)")
    return "spacing (min / median / max)", f"{values} {says}"


def check_dataset(
    root: str | Path, labels: dict[int, str] | list[int] | None = None,
    palette: dict[tuple[int, int, int], int] | None = None,
    roi_dir: str | Path | None = None, ignore_label: int | None = None,
) -> DoctorReport:
    """Validate a data folder and summarise it; never modifies a file.

    Args:
        root: data folder (``images/`` + ``masks/`` or nnU-Net ``imagesTr/`` + ``labelsTr/``).
        labels: declared label values; default: ``dataset.json``'s, else whatever the masks hold.
        palette: RGB colour -> label, for colour masks.
        roi_dir: folder of regions of interest (default: ``roi/`` or ``fov/`` when present).
        ignore_label: the mask value of unlabelled pixels (default: the label named
            ``ignore`` in ``labels`` or ``dataset.json``); the summary gets each case's
            labelled share. The regions ``dataset.json`` declares are listed, and their labels
            are declared ones (``unetkit.data.declared``).
    """
    report = DoctorReport(Path(root))
    try:
        scan = scan_dataset(root, roi_dir)
    except DatasetError as error:
        report.errors.append(str(error))
        return report
    try:  # classes, ignore label and the regions of dataset.json (unetkit.data.declared)
        declared = declare_labels(root, labels, ignore_label)
    except DatasetError as error:
        report.errors.append(str(error))
        declared = DeclaredLabels(labels if labels is not None else scan.labels)
    allowed = declared.allowed()
    declared_set = {int(v) for v in allowed} if allowed is not None else None
    ignore, regions = declared.ignore, declared.regions
    for path in scan.unpaired_masks:
        report.errors.append(f"{path}: mask without a matching image in {scan.image_dir}")
    for case in scan.unpaired_images:
        report.errors.append(f"{case.image_paths[0]}: image without a matching mask"
                             + (f" in {scan.mask_dir}" if scan.mask_dir else " (no masks folder)"))
    for path in scan.duplicate_masks:
        report.errors.append(f"{path}: a second mask for the same case; keep one")
    for path in scan.unpaired_rois:
        report.errors.append(f"{path}: region of interest without a matching image in "
                             f"{scan.image_dir}")
    for case in scan.cases_without_roi:
        report.errors.append(f"{case.image_paths[0]}: image without a region of interest in "
                             f"{scan.roi_dir}")
    for path in scan.duplicate_rois:
        report.errors.append(f"{path}: a second region of interest for the same case; keep one")
    report.errors.extend(scan.channel_problems)
    for path in scan.ignored:
        why = "its name starts with '.' (a hidden file)" if path.name.startswith(".") else \
            "not a supported image file"
        report.warnings.append(f"{path}: {why}; ignored")
    records = []
    for case in scan.cases:
        record = _check_case(case, declared_set, palette, report)
        if record is not None:
            records.append(record)
    if not scan.cases:
        report.errors.append(f"{root}: empty data set (no image files in {scan.image_dir})")
    labelled = labelled_summary(records, ignore, report.warnings)
    check_consistency(records, declared_set, report)
    report.warnings = _group_repeated(report.warnings, Path(root))
    report.summary = _summarise(records, len(scan.cases))
    if labelled:
        report.summary.update(ignore_label=ignore, labelled=labelled)
    if scan.roi_dir is not None:
        report.summary["roi_dir"] = str(scan.roi_dir)
    if regions is not None:
        report.summary["regions"] = [{**r.model_dump(), "painted": label} for r, label
                                     in zip(regions.regions, regions.order, strict=True)]
    return report


def _group_repeated(messages: list[str], root: Path, limit: int = 5) -> list[str]:
    """Merge identical ``"<file>: <text>"`` messages about more than ``limit`` files into one."""
    by_text: dict[str, list[str]] = {}
    for message in messages:
        path, _, text = message.partition(": ")
        by_text.setdefault(text, []).append(path)
    out = []
    for message in messages:
        path, _, text = message.partition(": ")
        paths = by_text[text]
        if len(paths) <= limit:
            out.append(message)
        elif path == paths[0]:
            names = [str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else p
                     for p in paths]
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                                if len(names) > limit else "")
            out.append(f"{len(paths)} files: {text} ({shown})")
    return out


def _check_case(
    case: Case, declared: set[int] | None,
    palette: dict[tuple[int, int, int], int] | None, report: DoctorReport,
) -> dict[str, Any] | None:
    """Check one case; returns what the summary needs, or None if it could not be read."""
    arrays, geometry = [], None
    for path in case.image_paths:
        try:
            array, geom = read_image(path)
        except (ValueError, ImportError, OSError) as error:
            report.errors.append(unreadable(path, "image", error))
            return None
        if arrays and array.shape[1:] != arrays[0].shape[1:]:
            report.errors.append(f"{path}: channel file shape {array.shape[1:]} differs from "
                                 f"{case.image_paths[0].name} {arrays[0].shape[1:]}")
            return None
        if not np.issubdtype(array.dtype, np.integer) and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            report.errors.append(f"{path}: {bad} non-finite (NaN/inf) intensity values")
        arrays.append(array)
        geometry = geometry or geom
    image = np.concatenate([a.astype(np.float32, copy=False) for a in arrays], axis=0)
    record: dict[str, Any] = {"shape": image.shape[1:], "channels": image.shape[0],
                              "spacing": geometry.spacing, "samples": _sample(image),
                              "path": case.image_paths[0], "affine": geometry.affine,
                              "unit": length_unit(geometry), "case": case.case_id}
    mask = None
    if case.mask_path is not None:
        record["mask"] = case.mask_path
        record["counts"], mask = _check_mask(case, image.shape[1:], geometry, declared, palette,
                                             report)
    if case.roi_path is not None:
        check_roi(case, image.shape[1:], geometry, mask, report)
    return record


def _check_mask(
    case: Case, shape: tuple[int, ...], geometry: Geometry, declared: set[int] | None,
    palette: dict[tuple[int, int, int], int] | None, report: DoctorReport,
) -> tuple[dict[int, int] | None, np.ndarray | None]:
    """The mask's value counts and the mask itself (None where unreadable or misshapen)."""
    path = case.mask_path
    assert path is not None
    try:
        mask, mask_geom = read_mask(path, palette=palette)
    except (ValueError, ImportError, OSError) as error:
        report.errors.append(unreadable(path, "mask", error))
        return None, None
    if mask_geom.extra.get("scaled_255"):
        report.warnings.append(f"{path}: binary mask stored as 0/255; read as labels 0/1")
    if mask_geom.extra.get("rgb"):
        how = "mapped through the palette" if palette else "grey stored as RGB; first channel used"
        report.warnings.append(f"{path}: colour mask {how}")
    if split_suffix(path)[1] in (".jpg", ".jpeg"):
        report.warnings.append(f"{path}: JPEG mask; lossy compression alters label values "
                               "at edges, prefer PNG")
    if mask.shape != shape:
        report.errors.append(f"{path}: mask shape {mask.shape} differs from image shape {shape} "
                             f"({case.image_paths[0].name})")
        return None, None
    mismatch = geometry_mismatch(path, mask_geom, case.image_paths[0], geometry)
    if mismatch:
        report.errors.append(mismatch)
    values, counts = np.unique(mask, return_counts=True)
    value_set = {int(v) for v in values}
    if not (declared and value_set <= declared) and looks_antialiased(mask, (values, counts)):
        report.errors.append(f"{path}: anti-aliased mask edges ({len(values)} values between "
                             f"{values[0]} and {values[-1]}, the in-between ones only at edges); "
                             "re-save it without smoothing or resizing with interpolation, or "
                             "declare the labels if these values are classes")
    elif declared is not None and not value_set <= declared:
        report.errors.append(f"{path}: mask values {sorted(value_set - declared)} are not among "
                             f"the declared labels {sorted(declared)}")
    if value_set <= {0}:
        report.warnings.append(f"{path}: mask has no foreground (all background)")
    return {int(v): int(c) for v, c in zip(values, counts, strict=False)}, mask


def _sample(image: np.ndarray) -> np.ndarray:
    """Up to ``_SAMPLES_PER_CASE`` evenly spaced finite voxels per channel, (C, N)."""
    flat = image.reshape(image.shape[0], -1)
    step = max(1, flat.shape[1] // _SAMPLES_PER_CASE)
    return flat[:, ::step]


def _summarise(records: list[dict[str, Any]], case_count: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"case_count": case_count}
    if not records or len({len(r["shape"]) for r in records}) > 1:
        return summary
    summary["channels"] = records[0]["channels"]
    summary["spatial_dims"] = len(records[0]["shape"])
    for key, name in (("shape", "size"), ("spacing", "spacing")):
        values = np.asarray([r[key] for r in records], dtype=np.float64)
        summary[name] = {stat: tuple(float(v) for v in fn(values, axis=0))
                         for stat, fn in (("min", np.min), ("median", np.median),
                                          ("max", np.max))}
    units = {r["unit"] for r in records}
    summary["spacing_unit"] = units.pop() if len(units) == 1 else "mixed"
    if len({r["channels"] for r in records}) == 1:
        samples = np.concatenate([r["samples"] for r in records], axis=1)
        summary["intensity"] = []
        for row in samples:
            row = row[np.isfinite(row)]
            if row.size == 0:
                continue
            names = [f"p{p:g}" for p in _PERCENTILES]
            stats = dict(zip(names, np.percentile(row, _PERCENTILES), strict=True))
            stats.update(mean=row.mean(), std=row.std())
            summary["intensity"].append({k: float(v) for k, v in stats.items()})
    totals = class_totals(records)
    voxels = sum(t[0] for t in totals.values()) or 1
    summary["class_frequencies"] = {
        label: {"voxel_fraction": count / voxels, "cases": cases}
        for label, (count, cases) in sorted(totals.items())}
    return summary
