"""Inference settings: a checkpoint's config with the user's changes, checked before use."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from unetkit.config import Config, InferConfig, apply_overrides, apply_values, check_fields

log = logging.getLogger("unetkit.infer.predictor")

# What prediction reads of a config besides the network: the infer section and the data
# fields of its preprocessing (``Preprocessor.from_config``, ``Predictor`` slicing).
PREDICTION_FIELDS = ("infer.*", "data.image_offset", "data.target_spacing",
                     "data.normalization.*", "data.slice_axis", "data.slice_context")


def configure(config: Config, infer: InferConfig | None = None,
              settings: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> Config:
    """``config`` with ``infer`` replacing its inference section, then ``{"infer.field": value}``
    settings (None values keep the stored ones), then ``section.field=value`` overrides.

    Raises:
        ConfigError: a setting or override of a field prediction does not read (anything but
            ``PREDICTION_FIELDS``: ``train.lr`` would be accepted and ignored), or an invalid
            value; the message names the field.
    """
    if infer is not None:
        config = config.model_copy(update={"infer": infer})
    settings = dict(settings or {})
    if settings.get("infer.tta_axes") == "all":  # every spatial axis of this model
        settings["infer.tta_axes"] = list(range(config.model.spatial_dims))
    if settings:
        check_fields(settings, PREDICTION_FIELDS, "prediction", "inference options")
        config = apply_values(config, settings, source="inference options")
    if overrides:
        config = apply_overrides(config, list(overrides), fields=PREDICTION_FIELDS,
                                 user="prediction")
    return config


def resolve_auto_threshold(config: Config, calibration: dict[str, Any] | None) -> Config:
    """``infer.threshold: auto`` -> the calibrated threshold (0.5, with a warning, if none)."""
    if config.infer.threshold != "auto":
        return config
    threshold = (calibration or {}).get("threshold")
    if threshold is None:
        log.warning("infer.threshold is auto but this model was not calibrated (training did "
                    "not reach its end?); using 0.5")
        threshold = 0.5
    infer = config.infer.model_copy(update={"threshold": float(threshold)})
    return config.model_copy(update={"infer": infer})


def check_settings(config: Config, labels: dict[int, str]) -> None:
    """Refuse settings that cannot work with this model; warn about doubtful ones.

    Raises:
        ValueError: TTA axes or window of the wrong dimensionality, or a two-class rule
            (threshold, wall closing) on a model with more classes or with regions.
    """
    dims, infer = config.model.spatial_dims, config.infer
    bad = [a for a in infer.tta_axes if not 0 <= a < dims]
    if bad:
        raise ValueError(f"infer.tta_axes {infer.tta_axes}: axes must be in 0..{dims - 1} "
                         f"for a {dims}D model")
    if (infer.threshold is not None or infer.postprocess.wall_seed_threshold) \
            and config.data.regions:
        raise ValueError("infer.threshold / infer.postprocess.wall_seed_threshold: a region "
                         "model (data.regions) decides each region where its probability "
                         "exceeds 0.5; leave them unset")
    if (infer.threshold is not None or infer.postprocess.wall_seed_threshold) \
            and len(labels) != 2:
        raise ValueError(f"infer.threshold / infer.postprocess.wall_seed_threshold need a "
                         f"two-class model; this one has {len(labels)} labels")
    if infer.window is not None and len(infer.window) != dims:
        raise ValueError(f"infer.window {infer.window}: needs {dims} values for a {dims}D model")
    unseen = unflipped_tta_axes(config)
    if unseen:
        log.warning("infer.tta_axes mirrors axes %s, which training never flipped "
                    "(data.augment.flip_axes %s, no rot90): the mirrored views are ones the "
                    "network has not learnt", unseen, config.data.augment.flip_axes)
    if config.data.image_offset == "auto":
        log.warning("data.image_offset is auto in this model's config but was never "
                    "measured; predicting without resampling")


def unflipped_tta_axes(config: Config) -> list[int]:
    """TTA axes that the training augmentation never mirrored (flip_axes without rot90)."""
    augment = config.data.augment
    if augment.flip_axes is None or (augment.rot90_prob > 0 and augment.enabled):
        return []
    flipped = set(augment.flip_axes) if augment.enabled and augment.flip_prob > 0 else set()
    return [a for a in config.infer.tta_axes if a not in flipped]


def check_image(array: np.ndarray, config: Config, source: str) -> np.ndarray:
    """A raw ``(C, *spatial)`` image as the model takes it (a grey RGB becomes one channel).

    A non-finite value (NaN or infinity) anywhere is an error rather than a guess: replacing
    it by 0 or the mean would silently predict on invented intensities.

    Raises:
        ValueError: wrong number of spatial axes or channels, or non-finite values; the message
            names ``source``.
    """
    model = config.model
    dims = 3 if config.data.slice_axis is not None else model.spatial_dims  # slices of volumes
    if array.ndim != dims + 1:
        raise ValueError(f"{source}: image of shape {array.shape} is not (C, *spatial) with "
                         f"{dims} spatial axes, as the model was trained")
    channels = config.image_channels  # 2.5D: the network takes slices x channels
    if array.shape[0] != channels:
        grey_rgb = channels == 1 and array.shape[0] in (3, 4) and all(
            np.array_equal(array[0], array[c]) for c in (1, 2))
        if not grey_rgb:
            raise ValueError(f"{source}: image has {array.shape[0]} channels, the model "
                             f"expects {channels}")
        array = array[:1]
    if np.issubdtype(array.dtype, np.inexact):
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(f"{source}: image has {bad} non-finite (NaN/inf) value(s) of "
                             f"{array.size}; replace them before predicting")
    return array
