"""The config's sections as validated pydantic objects: model, data, train, infer.

Every field has its default and a one-line description here (``unetkit config`` prints them as
commented YAML; ``configs/default.yaml`` is that output). Invalid values raise ``ConfigError``
(``unetkit.config.io``) naming the field and what is allowed. The ``data`` section lives in
``data_schema``, ``train`` and ``infer`` in ``run_schema``; all are importable from here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from unetkit.config.data_schema import AugmentConfig, DataConfig, NormalizationConfig
from unetkit.config.run_schema import InferConfig, LossConfig, PostprocessConfig, TrainConfig
from unetkit.config.section import Section, parse_duration

__all__ = ["AugmentConfig", "Config", "DataConfig", "InferConfig", "LossConfig", "ModelConfig",
           "NormalizationConfig", "PostprocessConfig", "Section", "TrainConfig", "parse_duration"]


MAX_WIDTH = 1024  # first-stage channels; nnU-Net uses 32 and caps every stage at 320-512
MAX_CHANNELS = 4096  # image channels (2.5D: slices x channels) and classes


class ModelConfig(Section):
    """Which network to build; options are passed to ``unetkit.nn.build_model``."""

    name: Literal["unet", "resunet", "attention_unet", "unetplusplus"] = Field(
        "unet", description="the architecture (docs/models.md)")
    spatial_dims: Literal[2, 3] = Field(2, description="2D images or 3D volumes")
    in_channels: int = Field(1, ge=1, le=MAX_CHANNELS, description="image channels (taken "
                             "from the images when they differ)")
    out_channels: int | None = Field(
        None, ge=1, le=MAX_CHANNELS, description="output channels; None: derived from "
        "data.labels (one per label, 1 with a sigmoid for two labels and a binary loss)")
    base_width: int = Field(32, ge=1, le=MAX_WIDTH, description="channels of the first "
                            "stage, doubled at every level")
    widths: list[Annotated[int, Field(ge=1, le=MAX_WIDTH * 2**6)]] | None = Field(
        None, description="channels per stage (depth + 1 entries); overrides base_width")
    depth: int = Field(4, ge=1, le=6, description="number of poolings")
    strides: list[list[int]] | None = Field(
        None, description="pooling factor per level (depth entries, one value per spatial axis, "
        "1 or 2), e.g. [[1, 2, 2], [2, 2, 2], ...] to keep a thick-slice axis; None: 2 everywhere")
    kernel_sizes: list[list[int]] | None = Field(
        None, description="convolution kernel per encoder stage (depth + 1 entries, bottleneck "
        "last, one value per spatial axis, 1 or 3); None: 3 everywhere")
    norm: Literal["none", "batch", "instance", "group"] = Field(
        "batch", description="normalisation after each convolution")
    upsample: Literal["transpose", "interpolate"] = Field(
        "transpose", description="transposed convolution, or 1x1 conv + linear interpolation")
    padding: Literal["same", "valid"] = Field(
        "same", description="same keeps the size; valid: unpadded convolutions "
        "(572 -> 388 at depth 4, the 2015 paper's overlap-tile)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="channel dropout after the deepest "
                           "encoder block and the bottleneck")
    deep_supervision: bool = Field(False, description="also train auxiliary heads at 1/2, 1/4, "
                                   "... resolution (nnU-Net)")

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


class Config(Section):
    """The whole configuration of a unetkit run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    infer: InferConfig = Field(default_factory=InferConfig)

    @property
    def image_channels(self) -> int:
        """Channels of the images the model reads: ``model.in_channels``, or its share per
        slice when volumes are fed as 2.5D slices (``data.slices_per_input``)."""
        return self.model.in_channels // self.data.slices_per_input
