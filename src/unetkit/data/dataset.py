"""Find image/mask pairs on disk and load them.

Two layouts are recognised (``docs/data.md``):

* ``root/images/`` + ``root/masks/`` (or ``labels/``): files pair by stem, any supported suffix
  (``a.png`` pairs with ``a.tif``).  Several image files ``case_0000.png``, ``case_0001.png`` are
  the channels of case ``case`` (nnU-Net's convention); a folder in ``images/`` is a DICOM series.
* nnU-Net: ``root/imagesTr/`` + ``root/labelsTr/`` with ``_0000`` channel suffixes and an optional
  ``dataset.json`` (its ``labels`` and ``channel_names``/``modality`` are read).

Regions of interest (a field of view, a body outline) pair with the images the way masks do:
``root/roi/`` or ``root/fov/`` is found automatically, ``roi_dir`` (``data.roi_dir``) names
another folder; ``Case.roi_path`` is the case's file (``unetkit.data.roi`` reads it).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetkit.data.io import Geometry, is_supported, read_image, read_mask, split_suffix

logger = logging.getLogger(__name__)

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")  # nnU-Net's case_0000
_LAYOUTS = (("images", "masks"), ("images", "labels"), ("imagesTr", "labelsTr"))
ROI_FOLDERS = ("roi", "fov")  # found inside a data folder without being named


class DatasetError(ValueError):
    """The data folder is missing, has no recognised layout or holds an inconsistent case."""


@dataclass(frozen=True)
class Case:
    """One training case: its image file(s) (one per channel), its mask and its region of
    interest (None when absent)."""

    case_id: str
    image_paths: tuple[Path, ...]
    mask_path: Path | None
    roi_path: Path | None = None


@dataclass
class DatasetScan:
    """Everything found in a data folder, paired or not (the doctor reports the leftovers)."""

    root: Path
    image_dir: Path
    mask_dir: Path | None
    cases: list[Case]
    unpaired_masks: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    duplicate_masks: list[Path] = field(default_factory=list)
    labels: dict[int, str] | None = None
    channel_names: list[str] | None = None
    roi_dir: Path | None = None
    unpaired_rois: list[Path] = field(default_factory=list)
    duplicate_rois: list[Path] = field(default_factory=list)

    @property
    def unpaired_images(self) -> list[Case]:
        """Cases that have image files but no mask."""
        return [case for case in self.cases if case.mask_path is None]

    @property
    def cases_without_roi(self) -> list[Case]:
        """Cases without a region of interest in a data set that has a folder of them."""
        return [case for case in self.cases if self.roi_dir and case.roi_path is None]


def find_layout(root: str | Path) -> tuple[Path, Path | None]:
    """Return ``(image_dir, mask_dir)`` of a data folder; ``mask_dir`` is None if there is none.

    Raises:
        DatasetError: ``root`` does not exist or has neither ``images/`` nor ``imagesTr/``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder not found")
    for image_name, mask_name in _LAYOUTS:
        if (root / image_name).is_dir():
            mask_dir = root / mask_name
            if mask_dir.is_dir():
                return root / image_name, mask_dir
    for image_name, _ in _LAYOUTS:
        if (root / image_name).is_dir():
            return root / image_name, None
    raise DatasetError(f"{root}: no images/ + masks/ (or nnU-Net imagesTr/ + labelsTr/) folders")


def find_roi_dir(root: str | Path, roi_dir: str | Path | None = None) -> Path | None:
    """The folder of regions of interest: ``roi_dir`` (relative to ``root`` or absolute), else
    ``root/roi`` or ``root/fov``; None when there is none.

    Raises:
        DatasetError: ``roi_dir`` is not a folder, or both ``roi/`` and ``fov/`` exist.
    """
    root = Path(root)
    if roi_dir is not None:
        folder = root / roi_dir  # an absolute roi_dir replaces root
        if not folder.is_dir():
            raise DatasetError(f"{folder}: region-of-interest folder (data.roi_dir) not found")
        return folder
    found = [root / name for name in ROI_FOLDERS if (root / name).is_dir()]
    if len(found) > 1:
        raise DatasetError(f"{root}: both {' and '.join(f'{p.name}/' for p in found)} hold "
                           "regions of interest; name the one to use (data.roi_dir)")
    return found[0] if found else None


def read_dataset_json(root: str | Path) -> tuple[dict[int, str] | None, list[str] | None]:
    """Labels ``{value: name}`` and channel names from an nnU-Net ``dataset.json`` (v1 or v2)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None, None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    labels = None
    raw = meta.get("labels")
    if isinstance(raw, dict) and raw:
        first_key = next(iter(raw))
        if str(first_key).lstrip("-").isdigit():  # v1: {"0": "background"}
            labels = {int(k): str(v) for k, v in raw.items()}
        else:  # v2: {"background": 0}; region lists are not label values
            labels = {int(v): str(k) for k, v in raw.items() if isinstance(v, int)}
    channels = meta.get("channel_names") or meta.get("modality")
    names = [str(channels[k]) for k in sorted(channels, key=int)] if channels else None
    return labels, names


def _group_by_stem(folder: Path) -> tuple[dict[str, list[tuple[int, Path]]], list[Path]]:
    """``{case_id: [(channel, path), ...]}`` plus files that are not images."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    ignored: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not is_supported(path):
            ignored.append(path)
            continue
        stem = path.name if path.is_dir() else split_suffix(path)[0]
        match = CHANNEL_SUFFIX.match(stem)
        case_id, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        groups.setdefault(case_id, []).append((channel, path))
    return groups, ignored


def _pair_with_images(folder: Path | None, images: dict, ignored: list[Path]
                      ) -> tuple[dict[str, Path], list[Path]]:
    """``({case_id: file}, duplicates)`` of a folder of masks (or ROIs) pairing by stem; files
    that are not images are added to ``ignored``."""
    paired: dict[str, Path] = {}
    duplicates: list[Path] = []
    for path in sorted(folder.iterdir()) if folder is not None else []:
        if path.name.startswith(".") or not is_supported(path):
            ignored.append(path)
            continue
        stem = path.name if path.is_dir() else split_suffix(path)[0]
        match = CHANNEL_SUFFIX.match(stem)
        if stem not in images and match and match["case"] in images:
            stem = match["case"]  # a mask named like a channel file still pairs
        if stem in paired:
            duplicates.append(path)
        else:
            paired[stem] = path
    return paired, duplicates


def scan_dataset(root: str | Path, roi_dir: str | Path | None = None) -> DatasetScan:
    """Pair images, masks and regions of interest by stem without reading any pixel (see the
    module docstring; ``roi_dir`` as in ``find_roi_dir``)."""
    root = Path(root)
    image_dir, mask_dir = find_layout(root)
    images, ignored = _group_by_stem(image_dir)
    masks, duplicates = _pair_with_images(mask_dir, images, ignored)
    roi_folder = find_roi_dir(root, roi_dir)
    rois, duplicate_rois = _pair_with_images(roi_folder, images, ignored)
    cases = []
    for case_id in sorted(images):
        channels = sorted(images[case_id])
        paths = tuple(path for _, path in channels)
        cases.append(Case(case_id, paths, masks.pop(case_id, None), rois.pop(case_id, None)))
    labels, channel_names = read_dataset_json(root)
    return DatasetScan(root, image_dir, mask_dir, cases, sorted(masks.values()), ignored,
                       duplicates, labels, channel_names, roi_folder, sorted(rois.values()),
                       duplicate_rois)


def discover_cases(root: str | Path, require_masks: bool = True,
                   roi_dir: str | Path | None = None) -> list[Case]:
    """List the cases of a data folder, sorted by case id.

    Args:
        root: folder with ``images/`` + ``masks/`` or nnU-Net ``imagesTr/`` + ``labelsTr/``.
        require_masks: drop (with a logged warning) images that have no mask.
        roi_dir: folder of regions of interest (see ``find_roi_dir``; default ``roi/``/``fov/``).

    Raises:
        DatasetError: no layout, no case at all, or an unusable ``roi_dir``.
    """
    scan = scan_dataset(root, roi_dir)
    for path in scan.unpaired_masks:
        logger.warning("%s: mask without an image; ignored", path)
    cases = scan.cases
    if require_masks:
        for case in scan.unpaired_images:
            logger.warning("%s: image without a mask; ignored", case.image_paths[0])
        cases = [case for case in cases if case.mask_path is not None]
    if not cases:
        raise DatasetError(f"{root}: no cases found (run `unetkit check {root}` for details)")
    return cases


def evenly_spaced(count: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(count)`` (all when they fit)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit).round()})


def load_case(
    case: Case, labels: dict[int, str] | list[int] | None = None,
    palette: dict[tuple[int, int, int], int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """Read one case.

    Returns:
        image ``(C, *spatial)`` float32 (channel files stacked in ``_0000``, ``_0001`` order),
        mask ``(*spatial)`` int64 (None if the case has no mask) and the first image's geometry.

    Raises:
        DatasetError: channel files or mask disagree in spatial shape, or mask values not in
            ``labels``.
    """
    arrays, geometry = [], None
    for path in case.image_paths:
        array, geom = read_image(path)
        if geometry is not None and array.shape[1:] != arrays[0].shape[1:]:
            raise DatasetError(f"{path}: channel shape {array.shape[1:]} differs from "
                               f"{case.image_paths[0]} {arrays[0].shape[1:]}")
        geometry = geometry or geom
        arrays.append(array.astype(np.float32, copy=False))
    image = np.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
    assert geometry is not None
    if case.mask_path is None:
        return image, None, geometry
    mask, _ = read_mask(case.mask_path, palette=palette)
    if mask.shape != image.shape[1:]:
        raise DatasetError(f"{case.mask_path}: mask shape {mask.shape} differs from image shape "
                           f"{image.shape[1:]} ({case.image_paths[0]})")
    mask = mask.astype(np.int64, copy=False)
    if labels is not None:
        extra = sorted(set(np.unique(mask).tolist()) - {int(v) for v in labels})
        if extra:
            raise DatasetError(f"{case.mask_path}: mask values {extra} are not among the labels "
                               f"{sorted(int(v) for v in labels)}")
    return image, mask, geometry
