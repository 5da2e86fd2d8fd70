"""From a data folder to what the training loop needs: split, loaded, normalised arrays.

The data doctor (``unetkit.data`` ``check_dataset``) runs first and training refuses to start on
errors. Labels come from ``data.labels`` or from the masks; ``mask_values`` records the values the
training mask files store for each label (e.g. ``{0: 0, 1: 255}`` for 0/255 masks) so that
``unetkit predict`` can write masks the same way. Cases with a region of interest
(``unetkit.data.roi``) get ``ROI_IGNORE`` outside it in their masks, and pixels of the ignore
label (``data.ignore_label`` or dataset.json's ``ignore``: sparse annotations,
``unetkit.data.ignore``) get the same label, after the labels and the normaliser are fitted;
``TrainData.ignore_index`` says so. Overlapping regions (``data.regions``, else those of
``dataset.json``: ``unetkit.data.regions``) set the labels (``0..K-1``, so a label value is its
class index) and ``TrainData.regions``; ``unetkit.data.declared`` resolves all three.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.config import Config
from unetkit.config.regions import Region, region_names
from unetkit.data.declared import DeclaredLabels, declare_labels
from unetkit.data.ignore import mark_cases, split_cases, unscaled
from unetkit.data.normalization import Normalizer
from unetkit.data.preprocessing import Preprocessor
from unetkit.data.sampling import to_slices
from unetkit.train.labels import contiguous, label_names, mask_format, stored_mask_values
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
    ignore_index: int | None = None  # the mask label of ignored pixels (outside ROIs, sparse)
    mask_format: str | None = None  # suffix of most training mask files (e.g. ".png")
    # data.calibration_band: per training image, its mask's held-out band (ignore elsewhere)
    calibration_masks: list[np.ndarray] = field(default_factory=list)
    # data.slice_axis: slices per training case (train_images/masks hold them case after case)
    train_slices: list[int] = field(default_factory=list)
    # overlapping regions (data.regions or dataset.json): one sigmoid output per region
    regions: list[Region] | None = None
    regions_class_order: list[int] | None = None

    @property
    def scored(self) -> dict[int, str]:
        """What validation scores, ``{k: name}``: the labels (0 is never scored), or the
        regions numbered from 1 (``dice_<name>`` columns of metrics.csv)."""
        return region_names(self.regions) if self.regions else self.labels


def run_doctor(data_dir: Path, labels: dict[int, str] | None, roi_dir: Path | None = None,
               ignore_label: int | None = None) -> None:
    """Run the data doctor; raise ``DataError`` listing every error; log the warnings."""
    from unetkit.data.doctor import check_dataset

    report = check_dataset(data_dir, labels=labels or None, roi_dir=roi_dir,
                           ignore_label=ignore_label)
    for warning in report.warnings:
        log.warning("data: %s", warning)
    if report.errors:
        lines = "\n".join(f"  - {e}" for e in report.errors)
        count = len(report.errors)
        raise DataError(f"{data_dir}: the data doctor found {count} error(s):\n{lines}")


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


def prepare_data(config: Config, data_dir: str | Path, check: bool = True,
                 normalization: dict[str, Any] | None = None) -> TrainData:
    """Check, discover, split, load and normalise a data folder as ``config`` says.

    ``normalization``: fitted normaliser statistics to keep instead of fitting them on the
    training cases (fine-tuning: the statistics the initial weights were trained with).

    Raises:
        DataError: the doctor found errors, or the split leaves no training case.
    """
    from unetkit.data.dataset import DatasetError, discover_cases

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {data_dir}: not a folder")
    d = config.data
    if check:
        run_doctor(data_dir, d.labels, d.roi_dir, d.ignore_label)
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
    declared = declared_labels(config, data_dir)
    ignore, regions = declared.ignore, declared.regions
    loaded = load_cases([cases[cid] for cid in train_ids + val_ids], declared.allowed())
    images = {cid: item[0].astype(np.float32, copy=False) for cid, item in loaded.items()}
    masks = {cid: unscaled(item[1].astype(np.int64, copy=False), cases[cid].mask_path, ignore)
             for cid, item in loaded.items()}
    stored: dict[int, int] = {}
    for cid in train_ids[:5]:
        stored.update(stored_mask_values(cases[cid], masks[cid]))
    masks, ignored = split_cases(masks, ignore)  # ignored pixels: background until marked
    labels = label_names(declared.classes, list(masks.values()))
    labels_by_value = labels
    labels, table = contiguous(labels)
    if table is not None:
        masks = {cid: table[m] for cid, m in masks.items()}
    mask_values = {i: stored.get(v, v) for i, v in enumerate(sorted(labels_by_value))}
    preprocessor = Preprocessor.from_config(d).fit(
        [images[c] for c in train_ids], [masks[c] for c in train_ids], d.image_offset)
    if normalization is not None:
        preprocessor.normalizer = Normalizer.from_state_dict(normalization)
    masks, ignore_index = outside_roi(cases, masks)  # labels and normaliser never see it
    masks, ignore_index = mark_cases(masks, ignored, ignore_index, train_ids)
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
    slices = [m.shape[d.slice_axis] for m in train_masks] if d.slice_axis is not None else []
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
        calibration_masks=[np.ascontiguousarray(band) for band in bands], train_slices=slices,
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


def declared_labels(config: Config, data_dir: Path) -> DeclaredLabels:
    """The classes, ignore label and regions of a run (``unetkit.data.declared``):
    ``data.labels`` / ``data.ignore_label`` / ``data.regions`` or dataset.json's.

    Raises:
        DataError: dataset.json or its regions are not usable, or an ignore label against
            nnU-Net's convention or naming a class (one line).
    """
    from unetkit.data.dataset import DatasetError

    d = config.data
    try:
        return declare_labels(data_dir, d.labels, d.ignore_label, d.regions,
                              d.regions_class_order)
    except DatasetError as error:
        raise DataError(str(error)) from None
