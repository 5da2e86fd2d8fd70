"""From a data folder to what the training loop needs: split, loaded, normalised arrays.

The data doctor (``unetkit.data`` ``check_dataset``) runs first and training refuses to start on
errors. Labels come from ``data.labels`` or from the masks; ``mask_values`` records the values the
training mask files store for each label (e.g. ``{0: 0, 1: 255}`` for 0/255 masks) so that
``unetkit predict`` can write masks the same way. Cases with a region of interest
(``unetkit.data.roi``) get ``ROI_IGNORE`` outside it in their masks, after the labels and the
normaliser are fitted, and ``TrainData.ignore_index`` says so. Overlapping regions
(``data.regions``, else those of ``dataset.json``: ``unetkit.data.regions``) set the labels
(``0..K-1``, so a label value is its class index) and ``TrainData.regions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import Config
from unetkit.config.regions import Region, region_names
from unetkit.data.preprocessing import Preprocessor
from unetkit.data.sampling import to_slices
from unetkit.train.splits import hold_out_bands, make_split

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The data folder cannot be trained on; the message lists every problem."""


@dataclass
class TrainData:
    """Normalised training and validation arrays plus what the checkpoint must remember.

    Images are ``(C, *spatial)`` float32, masks ``(*spatial)`` int64 label maps.
    """

    train_ids: list[str]
    val_ids: list[str]
    train_images: list[np.ndarray]
    train_masks: list[np.ndarray]
    val_images: list[np.ndarray]
    val_masks: list[np.ndarray]
    labels: dict[int, str]
    mask_values: dict[int, int]
    preprocessing: dict[str, Any]  # Preprocessor.state_dict(): fitted statistics
    in_channels: int
    spacings: list[tuple[float, ...]] = field(default_factory=list)
    image_offset: list[float] | None = None  # applied to every image above (data.image_offset)
    ignore_index: int | None = None  # the mask label outside regions of interest, if any
    mask_format: str | None = None  # suffix of most training mask files (e.g. ".png")
    # data.calibration_band: per training image, its mask's held-out band (ignore elsewhere)
    calibration_masks: list[np.ndarray] = field(default_factory=list)
    # overlapping regions (data.regions or dataset.json): one sigmoid output per region
    regions: list[Region] | None = None
    regions_class_order: list[int] | None = None

    @property
    def scored(self) -> dict[int, str]:
        """What validation scores, ``{k: name}``: the labels (0 is never scored), or the
        regions numbered from 1 (``dice_<name>`` columns of metrics.csv)."""
        return region_names(self.regions) if self.regions else self.labels


def run_doctor(data_dir: Path, labels: dict[int, str] | None, roi_dir: Path | None = None
               ) -> None:
    """Run the data doctor; raise ``DataError`` listing every error; log the warnings."""
    from unetkit.data.doctor import check_dataset

    report = check_dataset(data_dir, labels=sorted(labels) if labels else None, roi_dir=roi_dir)
    for warning in report.warnings:
        log.warning("data: %s", warning)
    if report.errors:
        lines = "\n".join(f"  - {e}" for e in report.errors)
        count = len(report.errors)
        raise DataError(f"{data_dir}: the data doctor found {count} error(s):\n{lines}")


def mask_format(cases: list[Any]) -> str | None:
    """The suffix most training mask files have (``".png"``), so that predictions of images
    in another format (DRIVE: TIFF photographs, PNG masks) come out like the masks."""
    from collections import Counter

    from unetkit.data import io

    suffixes = Counter(io.split_suffix(c.mask_path)[1].lower() for c in cases
                       if c.mask_path is not None and not Path(c.mask_path).is_dir())
    return suffixes.most_common(1)[0][0] if suffixes else None


def stored_mask_values(case: Any, mask: np.ndarray) -> dict[int, int]:
    """``{label: value stored in the mask file}`` by reading the file raw (no 0/255 conversion)."""
    from unetkit.data import io

    raw, _ = io.read_image(case.mask_path)
    raw = np.asarray(raw).reshape(mask.shape) if raw.size == mask.size else None
    values: dict[int, int] = {}
    for label in np.unique(mask).tolist():
        if raw is None:
            values[int(label)] = int(label)
            continue
        stored, counts = np.unique(raw[mask == label], return_counts=True)
        values[int(label)] = int(stored[np.argmax(counts)])
    return values


def label_names(
    declared: dict[int, str] | None, masks: list[np.ndarray]
) -> dict[int, str]:
    """``{label value: name}`` from the config / dataset.json, else the values the masks hold."""
    if declared:
        names = {int(k): v for k, v in declared.items()}
        names.setdefault(0, "background")
        return dict(sorted(names.items()))
    present = sorted({int(v) for m in masks for v in np.unique(m)} | {0})
    return {v: ("background" if v == 0 else f"class{v}") for v in present}


def contiguous(labels: dict[int, str]) -> tuple[dict[int, str], np.ndarray | None]:
    """Relabel values to 0..K-1 (the network's channels) when they are not already.

    Returns:
        ``({index: name}, lookup table value -> index)``; the table is None when no change.
    """
    values = sorted(labels)
    if values == list(range(len(values))):
        return labels, None
    table = np.zeros(max(values) + 1, dtype=np.int64)
    for index, value in enumerate(values):
        table[value] = index
    return {i: labels[v] for i, v in enumerate(values)}, table


def load_cases(cases: list[Any], declared: dict[int, str] | None) -> dict[str, tuple]:
    """``{case_id: load_case(case)}``; with declared labels every mask value must be one.

    Labels that are not declared are taken from every case, validation cases included, so a
    value in no mask is never met later; a declared set is checked against every mask here,
    whether or not the data doctor ran.

    Raises:
        DataError: a case cannot be loaded or its mask holds an undeclared value (names the file).
    """
    from unetkit.data.dataset import DatasetError, load_case

    allowed = sorted(label_names(declared, [])) if declared else None
    try:
        return {case.case_id: load_case(case, labels=allowed) for case in cases}
    except DatasetError as error:
        raise DataError(str(error)) from None


def outside_roi(cases: dict[str, Any], masks: dict[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], int | None]:
    """Masks with ``ROI_IGNORE`` outside each case's region of interest, and the ignore label
    (None when no case has a region).

    Raises:
        DataError: an unreadable region, or one whose shape is not the image's (names the file).
    """
    from unetkit.data.dataset import DatasetError
    from unetkit.data.roi import ROI_IGNORE, load_roi, mark_outside

    if not any(cases[cid].roi_path for cid in masks):
        return masks, None
    try:
        return {cid: mark_outside(m, load_roi(cases[cid], m.shape))
                for cid, m in masks.items()}, ROI_IGNORE
    except DatasetError as error:
        raise DataError(str(error)) from None


def prepare_data(config: Config, data_dir: str | Path, check: bool = True) -> TrainData:
    """Check, discover, split, load and normalise a data folder as ``config`` says.

    Raises:
        DataError: the doctor found errors, or the split leaves no training case.
    """
    from unetkit.data.dataset import DatasetError, discover_cases, read_dataset_json
    from unetkit.data.regions import region_label_names, resolve_regions

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {data_dir}: not a folder")
    d = config.data
    if check:
        run_doctor(data_dir, d.labels, d.roi_dir)
    try:
        cases = {case.case_id: case for case in discover_cases(data_dir, roi_dir=d.roi_dir)}
    except DatasetError as error:
        raise DataError(str(error)) from None
    try:
        train_ids, val_ids = make_split(
            list(cases), val_fraction=d.val_fraction, seed=config.train.seed,
            split_file=d.split_file, fold=d.fold, folds=d.folds,
        )
    except ValueError as error:
        raise DataError(str(error)) from None
    if not train_ids:
        raise DataError(f"--data {data_dir}: the split leaves no training case")
    try:
        declared = config.data.labels or read_dataset_json(data_dir)[0]
        regions = resolve_regions(d.regions, d.regions_class_order, data_dir)
        if regions is not None:  # the labels are the regions' (0..K-1: label = class index)
            declared = region_label_names(declared, regions)
    except DatasetError as error:
        raise DataError(str(error)) from None
    loaded = load_cases([cases[cid] for cid in train_ids + val_ids], declared)
    images = {cid: item[0].astype(np.float32, copy=False) for cid, item in loaded.items()}
    masks = {cid: item[1].astype(np.int64, copy=False) for cid, item in loaded.items()}
    labels = label_names(declared, list(masks.values()))  # validation cases included
    stored: dict[int, int] = {}
    for cid in train_ids[:5]:
        stored.update(stored_mask_values(cases[cid], masks[cid]))
    labels_by_value = labels
    labels, table = contiguous(labels)
    if table is not None:
        masks = {cid: table[m] for cid, m in masks.items()}
    mask_values = {i: stored.get(v, v) for i, v in enumerate(sorted(labels_by_value))}
    preprocessor = Preprocessor.from_config(d).fit(
        [images[c] for c in train_ids], [masks[c] for c in train_ids], d.image_offset)
    masks, ignore_index = outside_roi(cases, masks)  # labels and normaliser never see it
    prepared, records = {}, {}
    for cid, image in images.items():
        prepared[cid], records[cid] = preprocessor.preprocess(image, loaded[cid][2].spacing)
    masks = {cid: preprocessor.preprocess_mask(m, records[cid]) for cid, m in masks.items()}
    log.info("data: %d training and %d validation cases, labels %s",
             len(train_ids), len(val_ids), labels)
    train_images, train_masks = [prepared[c] for c in train_ids], [masks[c] for c in train_ids]
    bands: list[np.ndarray] = []
    if d.calibration_band > 0 and not val_ids and config.infer.threshold == "auto":
        ignore_index = band_ignore_label(config, ignore_index)
        train_masks, bands = hold_out_bands(train_masks, d.calibration_band, config.train.seed,
                                            ignore_index)
        log.info("data: a band of %.0f%% of every training mask's rows is held out of training "
                 "to calibrate the threshold on", 100 * d.calibration_band)
    if d.slice_axis is not None:  # 2D training on the slices of 3D volumes
        bands = [plane for band in bands for plane in np.moveaxis(band, d.slice_axis, 0)]
        train_images, train_masks = to_slices(train_images, train_masks, d.slice_axis,
                                              d.slice_context)
    return TrainData(
        train_ids=train_ids, val_ids=val_ids,
        train_images=train_images, train_masks=train_masks,
        val_images=[prepared[c] for c in val_ids], val_masks=[masks[c] for c in val_ids],
        labels=labels, mask_values=dict(sorted(mask_values.items())),
        preprocessing=preprocessor.state_dict(),
        in_channels=int(images[train_ids[0]].shape[0]) * d.slices_per_input,
        spacings=[tuple(loaded[c][2].spacing) for c in train_ids],
        image_offset=preprocessor.image_offset, ignore_index=ignore_index,
        mask_format=mask_format([cases[c] for c in train_ids]),
        calibration_masks=[np.ascontiguousarray(band) for band in bands],
        regions=regions.regions if regions else None,
        regions_class_order=regions.order if regions else None,
    )


def band_ignore_label(config: Config, roi_ignore: int | None) -> int:
    """The label that marks held-out bands: the regions' outside label, else the configured
    ``train.loss.ignore_index``, else ``ROI_IGNORE``."""
    from unetkit.data.roi import ROI_IGNORE

    if roi_ignore is not None:
        return roi_ignore
    configured = config.train.loss.ignore_index
    return configured if configured is not None else ROI_IGNORE
