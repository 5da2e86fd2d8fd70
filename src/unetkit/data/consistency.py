"""The doctor's checks across cases: what one case cannot tell alone.

Errors: different channel counts, 2-D mixed with 3-D, every mask all background, a mask that
differs from a mostly binary data set. Warnings: mask values that are not ``0..K-1``; mixed
spacings (cases more than ``SPACING_TOLERANCE`` off the median spacing on an axis: one warning
with how many and the range; the planner resamples them to the median); mixed orientations
(``nibabel.aff2axcodes`` of the images' affines differ: one warning naming the odd files, which
unetkit does not reorient).

Each check takes the doctor's per-case records (``shape``, ``channels``, ``spacing``,
``affine``, ``path``, ``mask``, ``counts``) and appends to a ``DoctorReport``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unetkit.data.geometry import format_tuple
from unetkit.data.mask_checks import odd_masks

if TYPE_CHECKING:
    from unetkit.data.doctor import DoctorReport

SPACING_TOLERANCE = 0.10  # relative difference to the median spacing, per axis
_SHOWN = 5  # files named in one message


def check_consistency(
    records: list[dict[str, Any]], declared: set[int] | None, report: DoctorReport
) -> None:
    """Every check of this module on the records of the readable cases."""
    if not records:
        return
    channels = _groups(records, lambda r: r["channels"])
    if len(channels) > 1:
        report.errors.append(f"{report.root}: cases have different channel counts: "
                             + _listing(channels, report.root, "{} channel(s)"))
    dims = _groups(records, lambda r: len(r["shape"]))
    if len(dims) > 1:
        report.errors.append(f"{report.root}: cases mix 2-D and 3-D images: "
                             + _listing(dims, report.root, "{}-D"))
    else:
        check_spacings(records, report)
        check_orientations(records, report)
    totals = class_totals(records)
    if totals and set(totals) <= {0}:
        report.errors.append(f"{report.root}: every mask is all background; a network trained on "
                             "this predicts only background (check the mask encoding)")
    if declared is None:
        _check_odd_masks(records, report)
    if declared is None and totals:
        found = sorted(totals)
        if found != list(range(len(found))):
            report.warnings.append(f"{report.root}: mask values {found} are not consecutive "
                                   "0..K-1; declare the labels (--labels) to confirm them")


def _groups(records: list[dict[str, Any]], key: Any) -> dict[Any, list[Path]]:
    """``{key(record): [image paths]}``, the most common key first."""
    groups: dict[Any, list[Path]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record["path"])
    return dict(sorted(groups.items(), key=lambda item: -len(item[1])))


def _listing(groups: dict[Any, list[Path]], root: Path, label: str) -> str:
    """``"2-D: 3 cases (a.png, ...); 3-D: 1 case (b.npy)"``: every group with its files."""
    return "; ".join(f"{label.format(key)}: {len(paths)} case(s) ({_names(paths, root)})"
                     for key, paths in groups.items())


def _names(paths: list[Path], root: Path) -> str:
    """Up to ``_SHOWN`` file names relative to ``root``, then how many more."""
    names = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths]
    more = len(names) - _SHOWN
    return ", ".join(names[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def check_spacings(records: list[dict[str, Any]], report: DoctorReport) -> None:
    """One warning when cases lie more than ``SPACING_TOLERANCE`` off the median spacing."""
    spacings = np.asarray([r["spacing"] for r in records], dtype=np.float64)
    median = np.median(spacings, axis=0)
    off = (np.abs(spacings - median) > SPACING_TOLERANCE * median).any(axis=1)
    if not off.any():
        return
    odd = [r["path"] for r, flag in zip(records, off, strict=True) if flag]
    report.warnings.append(
        f"{report.root}: mixed spacings: {len(odd)} of {len(records)} cases differ from the "
        f"median spacing {format_tuple(tuple(median))} by more than "
        f"{SPACING_TOLERANCE:.0%} on an axis (range {format_tuple(tuple(spacings.min(0)))} to "
        f"{format_tuple(tuple(spacings.max(0)))}; {_names(odd, report.root)}); the planner "
        "(unetkit plan, unetkit train without --config) resamples every case to the median "
        "spacing (data.target_spacing); with a config of your own, set data.target_spacing")


def check_orientations(records: list[dict[str, Any]], report: DoctorReport) -> None:
    """One warning naming the files whose axis codes differ from the most common ones."""
    from nibabel.orientations import aff2axcodes

    codes: dict[str, list[Path]] = {}
    for record in records:
        if record.get("affine") is not None:
            code = "".join(aff2axcodes(np.asarray(record["affine"], dtype=np.float64)))
            codes.setdefault(code, []).append(record["path"])
    if len(codes) < 2:
        return
    common = max(codes, key=lambda c: len(codes[c]))
    others = "; ".join(f"{code}: {_names(paths, report.root)}"
                       for code, paths in sorted(codes.items()) if code != common)
    report.warnings.append(
        f"{report.root}: mixed orientations: most images are {common} "
        f"({len(codes[common])} of {sum(map(len, codes.values()))}, axis codes of the affine), "
        f"others differ ({others}); unetkit does not reorient, so the network sees these "
        "flipped or rotated; save every case in one orientation (e.g. nibabel's "
        "as_closest_canonical for image and mask)")


def _check_odd_masks(records: list[dict[str, Any]], report: DoctorReport) -> None:
    """Masks that differ from a mostly binary data set (files with an error already skipped)."""
    values = {r["mask"]: set(r["counts"]) for r in records if r.get("counts")}
    flagged = {message.partition(": ")[0] for message in report.errors}
    for path in odd_masks(values):
        if str(path) in flagged:
            continue
        held = sorted(values[path])
        shown = ", ".join(map(str, held[:8])) + (", ..." if len(held) > 8 else "")
        report.errors.append(f"{path}: {len(held)} mask values ({shown}) where most masks are "
                             "binary; anti-aliased, an instance map or another encoding? "
                             "Re-save it with the labels of the others, or declare the labels")


def class_totals(records: list[dict[str, Any]]) -> dict[int, list[int]]:
    """``{label: [voxels, cases holding it]}`` over the records with mask counts."""
    totals: dict[int, list[int]] = {}
    for record in records:
        for label, count in (record.get("counts") or {}).items():
            entry = totals.setdefault(label, [0, 0])
            entry[0] += count
            entry[1] += 1
    return totals
