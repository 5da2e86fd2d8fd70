"""Fine-tuning, part 1: what a start checkpoint (``train.init``, ``unetkit train --init``) fixes.

Weights only mean something for the network they were trained in and for inputs prepared the
way they were during that training. The checkpoint therefore fixes ``FIXED_FIELDS``: every
``model`` field except the channel counts (the new data's) and deep supervision (a training
choice; heads the checkpoint lacks start fresh), and the input side the weights learned on:
``data.normalization``, ``data.target_spacing`` (the scale of the filters), ``data.slice_axis``
and ``data.slice_context`` (2D on slices, 2.5D). The planner plans everything else (patch,
batch, epochs, augmentation, loss, ...) for the new data and budget (``unetkit.plan.user``).

Normalisation statistics (schemes ``ct`` and ``zscore_dataset``) are kept from the checkpoint,
not refitted on the new cases, as nnU-Net does when it transfers a plan: the first layer's
weights were learned on intensities mapped by exactly those statistics, and the few cases a
fine-tuning run usually has would estimate new ones worse. When the channel count differs (the
first convolution starts fresh anyway) they are refitted. Per-image schemes (``zscore``,
``minmax``) have nothing to keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit.config import Config, config_from_dict, config_to_dict
from unetkit.runtime.checkpoint import checkpoint_config, load_checkpoint, resolve_checkpoint_path

log = logging.getLogger(__name__)

FREE_MODEL = ("in_channels", "out_channels", "deep_supervision")  # set by the new data / plan
FIXED_DATA = ("normalization", "target_spacing", "slice_axis", "slice_context")


class InitError(ValueError):
    """A start checkpoint cannot serve this run (one line naming ``--init`` and the reason)."""


def fixed_fields() -> list[str]:
    """The dotted config fields a start checkpoint fixes."""
    from unetkit.config.schema import ModelConfig

    return [f"model.{name}" for name in ModelConfig.model_fields if name not in FREE_MODEL] + \
        [f"data.{name}" for name in FIXED_DATA]


def lay_over(config: Config, values: dict[str, Any], source: str = "--init") -> Config:
    """``config`` with ``{"section.field": value}`` set, None and whole sections included."""
    data = config_to_dict(config)
    for key, value in values.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return config_from_dict(data, source=source)


def network_dims(config: Config) -> int:
    """Spatial dimensions of the cases a network of ``config`` trains on (3 for 2D slices)."""
    return 3 if config.data.slice_axis is not None else config.model.spatial_dims


@dataclass
class InitSource:
    """A start checkpoint: its file, config, weights and fitted preprocessing."""

    path: Path
    config: Config
    model_state: dict[str, Any]
    preprocessing: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> InitSource:
        """Load a checkpoint file or run folder (``best.pt``, else ``last.pt``) safely.

        Raises:
            CheckpointError: missing, unreadable or not a unetkit checkpoint (names the file).
        """
        file = resolve_checkpoint_path(path)
        checkpoint = load_checkpoint(file)
        return cls(file, checkpoint_config(checkpoint, f"--init {file}"),
                   checkpoint["model_state"], checkpoint.get("preprocessing") or {})

    def fixed_values(self) -> dict[str, Any]:
        """``{field: the checkpoint's value}`` of ``fixed_fields()``."""
        data = config_to_dict(self.config)
        return {key: data[key.split(".")[0]][key.split(".", 1)[1]] for key in fixed_fields()}

    def fix(self, config: Config) -> Config:
        """``config`` with the checkpoint's network and input preprocessing (changes logged)."""
        values = self.fixed_values()
        before = config_to_dict(config)
        changed = [k for k, v in values.items() if before[k.split(".")[0]][k.split(".", 1)[1]]
                   != v]
        if changed:
            log.info("--init %s fixes %s", self.path, ", ".join(changed))
        return lay_over(config, values, f"--init {self.path}")

    def describe(self) -> str:
        """``2D unet (widths 8-16-32, depth 2, batch norm)``: the network, for messages."""
        m = self.config.model
        widths = f"widths {'-'.join(map(str, m.widths))}" if m.widths else \
            f"base width {m.base_width}"
        return f"{m.spatial_dims}D {m.name} ({widths}, depth {m.depth}, {m.norm} norm)"

    def check_dims(self, dims: int, where: str) -> None:
        """Refuse data of ``dims`` spatial dimensions that this network cannot train on.

        Raises:
            InitError: one line naming the checkpoint, its network and the data.
        """
        expected = network_dims(self.config)
        if dims == expected:
            return
        trained = ("2D slices of 3D volumes" if self.config.data.slice_axis is not None
                   else f"{expected}D images")
        raise InitError(f"--init {self.path}: its {self.describe()} was trained on {trained}; "
                        f"{where} holds {dims}D images. Start from a checkpoint trained on "
                        f"{dims}D data, or train without --init")

    def normalization(self, channels: int) -> tuple[dict[str, Any] | None, str]:
        """The fitted normaliser state to keep for images of ``channels`` channels (None:
        fit on the training cases) and a sentence for the report (module docstring)."""
        stored = self.preprocessing.get("normalization") or {}
        scheme = self.config.data.normalization.scheme
        stats = stored.get("stats") or {}
        if not stats.get("mean"):
            return None, f"{scheme}: nothing fitted to keep (per-image or fixed scheme)"
        if len(stats["mean"]) != channels:
            return None, (f"{scheme}: refitted on the training cases (the checkpoint's "
                          f"statistics are for {len(stats['mean'])} channel(s), the images "
                          f"have {channels})")
        means = ", ".join(f"{v:.4g}" for v in stats["mean"])
        return stored, f"{scheme}: the checkpoint's statistics kept (mean {means})"

    def preparer(self, prepare: Callable[..., Any], notes: list[str]) -> Callable[..., Any]:
        """``prepare`` (``train.data.prepare_data``) that first refuses data of other
        dimensions and keeps the checkpoint's normalisation statistics; ``notes`` receives
        the report's sentence on the normalisation."""
        def run(config: Config, data_dir: str | Path, check: bool = True) -> Any:
            channels, dims, where = first_case(data_dir, config)
            self.check_dims(dims, where)
            kept, note = self.normalization(channels)
            notes.append(note)
            return prepare(config, data_dir, check=check, normalization=kept)
        return run


def first_case(data_dir: str | Path, config: Config) -> tuple[int, int, str]:
    """``(image channels, mask dimensions, its file)`` of the data folder's first case."""
    from unetkit.data.dataset import DatasetError, discover_cases, load_case
    from unetkit.train.data import DataError

    try:
        case = discover_cases(data_dir, roi_dir=config.data.roi_dir)[0]
        image, mask, _ = load_case(case)
    except DatasetError as error:
        raise DataError(str(error)) from None
    return int(image.shape[0]), int(image.ndim - 1), str(case.image_paths[0])
