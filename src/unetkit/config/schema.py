"""The config's sections as validated pydantic objects: model, data, train, infer.

Every field has its default here; ``configs/default.yaml`` lists them with comments. Invalid values
raise ``ConfigError`` (``unetkit.config.io``) naming the field and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which network to build; options are passed to ``unetkit.nn.build_model``."""

    name: Literal["unet", "resunet", "attention_unet", "unetplusplus"] = "unet"
    spatial_dims: Literal[2, 3] = 2
    in_channels: int = Field(1, ge=1)
    out_channels: int | None = Field(None, ge=1, description="None: derived from data.labels")
    base_width: int = Field(32, ge=1)
    widths: list[int] | None = None
    depth: int = Field(4, ge=1, le=6)
    strides: list[list[int]] | None = Field(
        None, description="pooling factor per level (depth entries, one value per spatial axis, "
        "1 or 2), e.g. [[1, 2, 2], [2, 2, 2], ...] to keep a thick-slice axis; None: 2 everywhere")
    kernel_sizes: list[list[int]] | None = Field(
        None, description="convolution kernel per encoder stage (depth + 1 entries, bottleneck "
        "last, one value per spatial axis, 1 or 3); None: 3 everywhere")
    norm: Literal["none", "batch", "instance", "group"] = "batch"
    upsample: Literal["transpose", "interpolate"] = "transpose"
    padding: Literal["same", "valid"] = "same"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    deep_supervision: bool = False

    def build_options(self) -> dict[str, Any]:
        """Keyword options for ``build_model`` (without ``name``)."""
        options = self.model_dump(exclude={"name"})
        if options["widths"] is None:
            options.pop("widths")
        else:
            options.pop("base_width")
        for key in ("strides", "kernel_sizes"):  # only when set: older configs build as before
            if options[key] is None:
                options.pop(key)
        return options


class NormalizationConfig(_Section):
    """Intensity normalisation; statistics fitted on the training set are stored with the model."""

    scheme: Literal["zscore", "zscore_dataset", "ct", "window", "minmax", "none"] = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _window_needed(self) -> NormalizationConfig:
        if self.scheme == "window" and self.window is None:
            raise ValueError("scheme 'window' needs window: [low, high]")
        return self


class AugmentConfig(_Section):
    """Batched augmentation; each transform has its own probability (0 disables it)."""

    enabled: bool = True
    flip_prob: float = Field(0.5, ge=0, le=1)
    flip_axes: list[int] | None = Field(
        None, description="spatial axes that may be flipped (0 = first spatial axis); None: all. "
        "Leave out an axis along which the masks are not mirror-symmetric to the images (labels "
        "drawn offset by a pixel in one direction)")
    rot90_prob: float = Field(0.5, ge=0, le=1)
    affine_prob: float = Field(0.3, ge=0, le=1)
    rotation_degrees: float = Field(30.0, ge=0, le=180)
    scale_range: tuple[float, float] = (0.8, 1.25)
    elastic_prob: float = Field(0.3, ge=0, le=1)
    elastic_alpha: float = Field(
        8.0, ge=0, description="std of the random displacements at the control points, in voxels")
    elastic_sigma: float = Field(
        40.0, gt=0, description="spacing of the control-point grid in voxels (field smoothness)")
    gamma_prob: float = Field(0.3, ge=0, le=1)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness_contrast_prob: float = Field(0.3, ge=0, le=1)
    brightness_range: tuple[float, float] = (-0.2, 0.2)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    noise_prob: float = Field(0.15, ge=0, le=1)
    noise_std: float = Field(0.1, ge=0)
    blur_prob: float = Field(0.1, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    lowres_prob: float = Field(0.1, ge=0, le=1)
    lowres_scale: tuple[float, float] = (0.5, 1.0)
    mask_interpolation: Literal["nearest", "linear"] = Field(
        "nearest", description="how rotation/scaling/elastic resample masks: nearest label, or "
        "linear interpolation of each label's indicator then the most covered label (edges stay "
        "where the linearly interpolated image has them)")
    padding_mode: Literal["zeros", "border", "reflection"] = Field(
        "zeros", description="what rotation/scaling/elastic show where they look outside the "
        "patch: zeros (image 0 = the mean, mask = background), border, or reflection (mirrored "
        "content, as the U-Net paper extrapolated)")

    @field_validator("flip_axes")
    @classmethod
    def _axes_valid(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (any(not 0 <= a <= 2 for a in value)
                                  or len(set(value)) < len(value)):
            raise ValueError("flip_axes holds distinct spatial axes 0, 1 (and 2 in 3D)")
        return value


class DataConfig(_Section):
    """Where the cases come from, how they are split, normalised, sampled and augmented."""

    labels: dict[int, str] | None = Field(None, description="None: read from the masks")
    patch_size: list[int] = Field(default_factory=lambda: [256, 256])
    batch_size: int = Field(8, ge=1)
    foreground_fraction: float = Field(0.33, ge=0, le=1)
    val_fraction: float = Field(0.2, ge=0, lt=1)
    split_file: Path | None = None
    fold: int | None = Field(None, ge=0)
    folds: int = Field(5, ge=2)
    num_workers: int = Field(0, ge=0)
    image_offset: list[float] | Literal["auto"] | None = Field(
        None, description="voxels by which the masks lie off the images, per spatial axis "
        "(mask(u) marks image(u + offset)); images are resampled by it in training and before "
        "prediction, so mirror augmentation keeps masks and images aligned. auto: measured on "
        "the training cases (unetkit.data.offset) and stored; None: no resampling")
    target_spacing: list[float | None] | None = Field(
        None, description="voxel spacing per spatial axis the images are resampled to before "
        "the network (training and prediction; predictions are resampled back to each input's "
        "grid); null for an axis keeps it; None: no resampling")
    slice_axis: int | None = Field(
        None, ge=0, le=2, description="train and predict 3D volumes as 2D slices across this "
        "spatial axis (with model.spatial_dims 2), e.g. for thick-slab volumes; None: as stored")
    roi_dir: Path | None = Field(
        None, description="folder of regions of interest (nonzero = inside) pairing with the "
        "images by case id, relative to the data folder or absolute; training ignores pixels "
        "outside them (train.loss.ignore_index 255); None: roi/ or fov/ when present")
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        # ``cache`` (read nowhere; cases are always held in memory) is accepted from older
        # configs and checkpoints and dropped.
        if isinstance(data, dict) and "cache" in data:
            data = {k: v for k, v in data.items() if k != "cache"}
        return data

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError("patch_size needs positive integers, one per spatial axis")
        return value


class LossConfig(_Section):
    """Loss by name with its options; see ``unetkit.losses.build_loss``."""

    name: Literal[
        "dice_ce", "dice_bce", "ce", "bce", "dice", "jaccard", "focal", "tversky"
    ] = "dice_ce"
    dice_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    smooth: float = Field(1e-5, ge=0)
    batch_dice: bool = True
    include_background: bool = False
    squared_denominator: bool = False
    class_weights: list[float] | None = None
    ignore_index: int | None = None
    focal_gamma: float = Field(2.0, ge=0)
    tversky_alpha: float = Field(0.3, ge=0, le=1)
    tversky_beta: float = Field(0.7, ge=0, le=1)


class TrainConfig(_Section):
    """Optimisation, budget, precision and checkpointing."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    warmup_epochs: int = Field(0, ge=0)
    epochs: int = Field(100, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    time_budget: str | None = Field(None, description="e.g. '90s', '10m', '2h'; plans the epochs")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    grad_clip: float | None = Field(12.0, gt=0)
    val_every: int = Field(1, ge=1)
    patience: int | None = Field(None, ge=1)
    seed: int = 0
    device: str = "auto"
    tensorboard: bool = False
    loss: LossConfig = Field(default_factory=LossConfig)

    @field_validator("channels_last", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML reads a bare on/off as a boolean.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("time_budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError(f"time budget {value!r} is not positive: give a duration such as "
                             "'90s', '10m' or '2h' (or leave it unset to train train.epochs)")
        return value


class PostprocessConfig(_Section):
    """Connected-component clean-up applied to predicted label maps."""

    keep_largest: bool = False
    min_size: int = Field(0, ge=0)
    fill_holes: bool = False
    wall_seed_threshold: float | None = Field(
        None, gt=0, lt=1, description="two-class models whose foreground is thin walls (cell "
        "membranes): close wall gaps between seeds = regions of foreground probability below "
        "this (seeded watershed; unetkit.infer.boundaries); None: off")
    wall_min_seed: int = Field(16, ge=1, description="smaller seed regions are ignored")
    wall_split_depth: float | None = Field(
        None, gt=0, description="seeds are the maxima of each seed region's distance transform "
        "at least this many pixels high, so cells joined through a wall gap get one seed each; "
        "None: one seed per region")


class InferConfig(_Section):
    """Sliding-window inference settings."""

    window: list[int] | None = Field(None, description="None: as large as the image allows")
    overlap: float = Field(0.25, ge=0, lt=1)
    gaussian: bool = True
    batch_size: int = Field(1, ge=1)
    tta_axes: list[int] = Field(default_factory=list)
    accumulate: Literal["float32", "float16"] = "float32"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threshold: float | Literal["auto"] | None = Field(
        None, description="two-class models: foreground where its probability >= threshold; "
        "auto: the threshold with the best mean F-beta on calibration images, chosen at the end "
        "of training and stored in the checkpoint; None: the more probable class")
    calibration_beta: float = Field(
        1.0, gt=0, description="threshold auto: F-beta to maximise (1 = Dice; below 1 favours "
        "precision, i.e. thinner foreground)")
    calibration_images: int = Field(
        16, ge=1, description="threshold auto: at most this many images (the validation cases, "
        "else the training cases, evenly spaced)")
    memory_budget_mb: float = Field(
        2048, gt=0, description="per forward and per accumulator; larger inputs are tiled and "
        "their labels written region by region")
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)

    @field_validator("threshold")
    @classmethod
    def _threshold_in_range(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("threshold must be in (0, 1), auto or null")
        return value


class Config(_Section):
    """The whole configuration of a unetkit run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    infer: InferConfig = Field(default_factory=InferConfig)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str) -> float:
    """'90s' / '10m' / '1.5h' / '300' -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"cannot read duration {text!r}: use e.g. '90s', '10m' or '2h'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
