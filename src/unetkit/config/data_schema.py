"""The ``data`` section: labels, split, patches, normalisation and augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from unetkit.config.regions import Region, coerce_regions, ignore_problem, region_problem
from unetkit.config.section import Section

_PROB = "probability per patch"


class NormalizationConfig(Section):
    """Intensity normalisation; statistics fitted on the training set are stored with the model."""

    scheme: Literal["zscore", "zscore_dataset", "ct", "window", "minmax", "none"] = Field(
        "zscore", description="zscore per image, zscore_dataset (one mean/std for all images), "
        "ct (clip to the foreground percentiles, then z-score), window (clip to window, scale "
        "to [0, 1]), minmax per image, or none")
    percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="ct: the training foreground's intensity percentiles to clip to")
    window: tuple[float, float] | None = Field(
        None, description="scheme window: [low, high] intensities, e.g. [-160, 240] for CT")
    contrast: Literal["none", "clahe"] = Field(
        "none", description="before the scheme: none, or clahe (contrast-limited adaptive "
        "histogram equalisation per channel, for unevenly lit photographs such as fundus images)")
    clahe_clip: float = Field(0.01, gt=0, le=1, description="contrast: clahe: the contrast limit "
                              "(larger: stronger equalisation)")

    @model_validator(mode="after")
    def _window_needed(self) -> NormalizationConfig:
        if self.scheme == "window" and self.window is None:
            raise ValueError("scheme 'window' needs window: [low, high]")
        return self


class AugmentConfig(Section):
    """Batched augmentation; each transform has its own probability (0 disables it)."""

    enabled: bool = Field(True, description="false: no augmentation at all")
    flip_prob: float = Field(0.5, ge=0, le=1, description=f"mirroring, {_PROB} and axis")
    flip_axes: list[int] | None = Field(
        None, description="spatial axes that may be flipped (0 = first spatial axis); None: all. "
        "Leave out an axis along which the masks are not mirror-symmetric to the images (labels "
        "drawn offset by a pixel in one direction)")
    rot90_prob: float = Field(0.5, ge=0, le=1, description=f"90-degree rotations, {_PROB}")
    affine_prob: float = Field(0.3, ge=0, le=1,
                               description=f"random rotation and scaling, {_PROB}")
    rotation_degrees: float = Field(30.0, ge=0, le=180,
                                    description="largest rotation angle of the affine transform")
    scale_range: tuple[float, float] = Field(
        (0.8, 1.25), description="zoom factors of the affine transform, [low, high]")
    elastic_prob: float = Field(0.3, ge=0, le=1, description=f"elastic deformation, {_PROB}")
    elastic_alpha: float = Field(
        8.0, ge=0, description="std of the random displacements at the control points, in voxels")
    elastic_sigma: float = Field(
        40.0, gt=0, description="spacing of the control-point grid in voxels (field smoothness)")
    gamma_prob: float = Field(0.3, ge=0, le=1, description=f"gamma correction, {_PROB}")
    gamma_range: tuple[float, float] = Field((0.7, 1.5), description="gamma, [low, high]")
    brightness_contrast_prob: float = Field(
        0.3, ge=0, le=1, description=f"brightness and contrast change, {_PROB}")
    brightness_range: tuple[float, float] = Field(
        (-0.2, 0.2), description="added brightness (normalised intensity units), [low, high]")
    contrast_range: tuple[float, float] = Field(
        (0.75, 1.25), description="contrast factor around the mean, [low, high]")
    noise_prob: float = Field(0.15, ge=0, le=1, description=f"Gaussian noise, {_PROB}")
    noise_std: float = Field(0.1, ge=0,
                             description="largest noise std (normalised intensity units)")
    blur_prob: float = Field(0.1, ge=0, le=1, description=f"Gaussian blur, {_PROB}")
    blur_sigma: tuple[float, float] = Field((0.5, 1.0),
                                            description="blur sigma in voxels, [low, high]")
    lowres_prob: float = Field(0.1, ge=0, le=1,
                               description=f"simulated low resolution, {_PROB}")
    lowres_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="downsampling factor before upsampling back, [low, high]")
    mask_interpolation: Literal["nearest", "linear"] = Field(
        "nearest", description="how rotation/scaling/elastic resample masks: nearest label, or "
        "linear interpolation of each label's indicator then the most covered label (edges stay "
        "where the linearly interpolated image has them)")
    device: Literal["auto", "cpu", "train"] = Field(
        "auto", description="where batches are augmented: cpu = where they are drawn (in the "
        "data.num_workers processes, in parallel, batch by batch with its own seed; in the "
        "training process when there are none), train = on the training device inside the "
        "training step; auto: cpu when worker processes draw the batches, else train (the run "
        "records the choice)")
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


class DataConfig(Section):
    """Where the cases come from, how they are split, normalised, sampled and augmented."""

    labels: dict[int, str] | None = Field(
        None, description="label value -> name, e.g. {0: background, 1: liver}; None: read "
        "from dataset.json or the masks")
    patch_size: list[int] = Field(default_factory=lambda: [256, 256],
                                  description="training patch, one size per spatial axis")
    batch_size: int = Field(8, ge=1, description="patches per step (per process with DDP)")
    foreground_fraction: float = Field(
        0.33, ge=0, le=1, description="share of each batch whose patch is centred on foreground")
    val_fraction: float = Field(0.2, ge=0, lt=1,
                                description="share of the cases held out for validation; 0: none")
    calibration_band: float = Field(
        0.0, ge=0, le=0.5, description="infer.threshold auto without validation cases: the "
        "labels of a band of this share of every training mask's rows are held out of training "
        "and the threshold is chosen on them, not on the learned pixels, where the network is "
        "over-confident; 0: calibrate on the training cases")
    split_file: Path | None = Field(
        None, description="JSON/YAML file with lists 'train' and 'val' of case ids (or a list "
        "of such folds, picked by fold); overrides val_fraction")
    fold: int | None = Field(None, ge=0, description="k-fold: the fold that validates "
                             "(0 .. folds-1); None: split by val_fraction")
    folds: int = Field(5, ge=2, description="k-fold: number of folds")
    num_workers: int | Literal["auto"] = Field(
        "auto", description="background processes drawing (and with augment.device cpu, "
        "augmenting) the batches; the batches are the same for any number; 0: in the training "
        "process; auto: one per spare core (at most 8) when training on a GPU, 0 on a CPU")
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
    slice_context: int = Field(
        0, ge=0, le=8, description="with slice_axis: this many neighbouring slices on each side "
        "join each slice as extra input channels (2.5D: the network sees (2k+1) x C channels, "
        "the edge slice repeated at the ends); 0: the slice alone")
    roi_dir: Path | None = Field(
        None, description="folder of regions of interest (nonzero = inside) pairing with the "
        "images by case id, relative to the data folder or absolute; training ignores pixels "
        "outside them (train.loss.ignore_index 255); None: roi/ or fov/ when present")
    ignore_label: int | None = Field(
        None, ge=0, description="mask value of unlabelled pixels (sparse annotations): they "
        "count in no loss, metric or calibration and no patch is centred on them; None: the "
        "label named 'ignore' in dataset.json (nnU-Net v2), if any")
    regions: list[Region] | None = Field(
        None, description="overlapping regions (nnU-Net's region-based training, e.g. BraTS): "
        "each a name and the label values it unites, [{name: whole_tumor, labels: [1, 2, 3]}, "
        "...] or [[1, 2, 3], [2, 3], [3]]; one sigmoid output per region; None: those of "
        "dataset.json when it declares regions, else one class per label")
    regions_class_order: list[int] | None = Field(
        None, description="with regions: the label painted where each region is predicted, in "
        "this order (later regions overwrite earlier ones), e.g. [1, 2, 3]")
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

    @field_validator("num_workers")
    @classmethod
    def _workers_not_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("num_workers must be 0 or more, or auto")
        return value

    @field_validator("regions", mode="before")
    @classmethod
    def _region_forms(cls, value: Any) -> Any:
        return coerce_regions(value)

    @model_validator(mode="after")
    def _regions_valid(self) -> DataConfig:
        problem = region_problem(self.regions, self.regions_class_order, self.labels) or \
            ignore_problem(self.regions, self.ignore_label, self.regions_class_order)
        if problem is not None:
            raise ValueError(f"data.regions: {problem}")
        return self

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 for v in value):
            raise ValueError("patch_size needs positive integers, one per spatial axis")
        return value

    @property
    def slices_per_input(self) -> int:
        """How many slices make one network input: ``2 * slice_context + 1`` when volumes are
        sliced (2.5D), else 1; the network takes ``slices_per_input`` x the image channels."""
        return 2 * self.slice_context + 1 if self.slice_axis is not None else 1
