"""The ``train`` and ``infer`` sections: optimisation, loss, budget, precision; inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from unetkit.config.section import Section, parse_duration

_PRECISION = ("auto = bf16 autocast on CPUs with fast bf16 and on GPUs, fp32 elsewhere; fp16 "
              "uses a gradient scaler")


def _on_off(value: Any) -> Any:
    """YAML reads a bare on/off as a boolean: back to the ``"on"``/``"off"`` strings."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


BINARY_LOSSES = ("bce", "dice_bce", "cldice_bce")  # losses of one-channel (sigmoid) models


class LossConfig(Section):
    """Loss by name with its options; see ``unetkit.losses.build_loss``."""

    name: Literal[
        "dice_ce", "dice_bce", "ce", "bce", "dice", "jaccard", "focal", "tversky", "cldice",
        "cldice_bce"
    ] = Field("dice_ce", description="dice_ce is Dice + cross-entropy as in nnU-Net (Dice + BCE "
              "with one output channel); bce, dice_bce and cldice_bce (BCE + clDice, for thin "
              "structures) are for one-channel (sigmoid) models")
    dice_weight: float = Field(1.0, ge=0, description="weight of the Dice term of dice_ce/_bce")
    ce_weight: float = Field(1.0, ge=0, description="weight of the (B)CE term of dice_ce/_bce")
    smooth: float = Field(1e-5, ge=0, description="added to numerator and denominator of the "
                          "Dice/Jaccard/Tversky scores")
    batch_dice: bool = Field(True, description="sum the Dice statistics over the batch before "
                             "the ratio (nnU-Net); false: one score per sample")
    include_background: bool = Field(False, description="count class 0 in the Dice term "
                                      "(multi-class models)")
    squared_denominator: bool = Field(False, description="Dice denominator sum p^2 + sum g^2 "
                                      "(V-Net) instead of sum p + sum g")
    class_weights: list[float] | None = Field(
        None, description="cross-entropy weight per class (two values, background and "
        "foreground, for one-channel models); None: equal")
    ignore_index: int | None = Field(None, description="label value that counts in no loss "
                                     "term (unlabelled voxels); None: every voxel counts")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss: focusing exponent")
    cldice_weight: float = Field(0.5, ge=0, description="weight of the clDice term of "
                                 "cldice_bce (centreline Dice, for vessels and other thin "
                                 "structures)")
    cldice_iterations: int = Field(10, ge=1, description="clDice: soft-skeleton iterations (at "
                                   "least the half-width of the thickest structure, in voxels)")
    tversky_alpha: float = Field(0.3, ge=0, le=1, description="Tversky loss: weight of false "
                                 "positives")
    tversky_beta: float = Field(0.7, ge=0, le=1, description="Tversky loss: weight of false "
                                "negatives")


class TrainConfig(Section):
    """Optimisation, budget, precision and checkpointing."""

    optimizer: Literal["adamw", "sgd"] = Field("adamw",
                                               description="sgd uses Nesterov momentum")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="decoupled (adamw) or L2 (sgd)")
    momentum: float = Field(0.99, ge=0, lt=1, description="sgd momentum")
    schedule: Literal["poly", "cosine", "constant"] = Field(
        "poly", description="how the learning rate falls over the planned steps (poly and cosine "
        "reach 0 at the end)")
    warmup_epochs: int = Field(0, ge=0, description="epochs of linear warm-up from 0")
    epochs: int = Field(100, ge=1, description="epochs to train when there is no time_budget")
    steps_per_epoch: int = Field(50, ge=1, description="optimisation steps per epoch")
    time_budget: str | None = Field(
        None, description="e.g. '90s', '10m', '2h': the epochs are planned (and re-planned "
        "after every step) to fit it, validation and saving included; None: train epochs")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description=_PRECISION)
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels-last memory format of training; auto: on for CPU (a "
        "planned run writes the layout its timing found faster on this CPU), on for CUDA "
        "except with instance or group norm (their CUDA kernels need contiguous maps)")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile the forward and loss (inductor; compiling takes tens "
        "of seconds, charged to the time budget); auto: used when measured faster for this step "
        "on this device (timings cached in ~/.cache/unetkit/step_timings.json; a GPU tries it "
        "on the run's first steps unless a time budget is under 10 minutes, a CPU never unasked)")
    cuda_graphs: Literal["auto", "on", "off"] = Field(
        "auto", description="capture the whole training step in a CUDA graph and replay it (one "
        "launch per step: for small patches, whose steps are bound by kernel launches); CUDA "
        "only, not with fp16's GradScaler or DDP; auto: used when measured faster (tried on the "
        "run's first steps, cached like compile)")
    grad_clip: float | None = Field(12.0, gt=0, description="largest gradient norm; None: "
                                    "no clipping")
    val_every: int = Field(1, ge=1, description="validate every this many epochs (and after "
                           "the last)")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without "
                                 "a better validation Dice; None: never early")
    seed: int = Field(0, description="random seed of weights, sampling and augmentation")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps; auto picks "
                        "what is available")
    init: Path | None = Field(
        None, description="fine-tuning: a checkpoint (or run folder) to start from; its "
        "network and input normalisation are kept, layers whose shapes match are loaded and "
        "the others (a head for another class count, another input channel count) start fresh "
        "(RUN/init.json lists which); None: random initialisation")
    tensorboard: bool = Field(False, description="also write TensorBoard scalars to "
                              "RUN/tensorboard (pip install 'unetkit[tensorboard]')")
    loss: LossConfig = Field(default_factory=LossConfig)

    _yaml_on_off = field_validator("channels_last", "compile", "cuda_graphs",
                                   mode="before")(_on_off)

    @field_validator("time_budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError(f"time budget {value!r} is not positive: give a duration such as "
                             "'90s', '10m' or '2h' (or leave it unset to train train.epochs)")
        return value


class PostprocessConfig(Section):
    """Connected-component clean-up applied to predicted label maps."""

    keep_largest: bool | Literal["auto"] = Field(
        False, description="keep only the largest component per class; auto: chosen at the end "
        "of training by the validation Dice of the best epoch with and without it")
    min_size: int = Field(0, ge=0, description="remove components under this many voxels")
    fill_holes: bool = Field(False, description="fill holes in each class")
    wall_seed_threshold: float | None = Field(
        None, gt=0, lt=1, description="two-class models whose foreground is thin walls (cell "
        "membranes): close wall gaps between seeds = regions of foreground probability below "
        "this (seeded watershed; unetkit.infer.boundaries); None: off")
    wall_min_seed: int = Field(16, ge=1, description="smaller seed regions are ignored")
    wall_split_depth: float | None = Field(
        None, gt=0, description="seeds are the maxima of each seed region's distance transform "
        "at least this many pixels high, so cells joined through a wall gap get one seed each; "
        "None: one seed per region")


class InferConfig(Section):
    """Sliding-window inference settings (unetkit predict and validation alike)."""

    window: list[int] | None = Field(
        None, description="window size per spatial axis; None: the whole image in one forward "
        "when it fits memory_budget_mb, else the fewest even, near-cubic tiles that fit, "
        "crossfaded across the margin they share")
    overlap: float = Field(0.25, ge=0, lt=1, description="with an explicit window: overlap of "
                           "neighbouring windows, as a fraction of the window")
    gaussian: bool = Field(True, description="with an explicit window: blend windows with "
                           "Gaussian weights (centre counts most); false: plain average")
    batch_size: int = Field(1, ge=1, description="windows per forward pass")
    tta_axes: list[int] = Field(default_factory=list, description="mirror test-time "
                                "augmentation over these spatial axes; []: none")
    accumulate: Literal["float32", "float16"] = Field(
        "float32", description="dtype of the blended scores; float16 halves their memory")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description=_PRECISION)
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="channels-last memory format of prediction and validation; auto: "
        "on for CPU (faster inference on every CPU measured, docs/inference.md) and for CUDA "
        "except with instance or group norm (their CUDA kernels need contiguous maps)")
    engine: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto", description="what runs the network on a CPU: auto = torch, unless the table "
        "of measured CPU kinds lists another fp32 engine for this CPU (its one entry, AVX2, is "
        "torch; docs/inference.md); onnxruntime exports the checkpoint once "
        "(cached by content hash, verified against PyTorch) and falls back to torch, with the "
        "reason logged, when that fails or onnxruntime is missing; GPUs always use torch")
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
        2048, gt=0, description="memory of one prediction: the forward, the blending "
        "accumulators and the whole-input maps (the estimate in unetkit.infer.tiling); larger "
        "inputs are tiled, and when even their class scores do not fit, labels are decided "
        "region by region")
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)

    _yaml_on_off = field_validator("channels_last", mode="before")(_on_off)

    @field_validator("threshold")
    @classmethod
    def _threshold_in_range(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("threshold must be in (0, 1), auto or null")
        return value
