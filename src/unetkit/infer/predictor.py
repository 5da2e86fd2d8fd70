"""Checkpoint -> network -> prediction: normalisation, windowing, TTA and post-processing.

``Predictor.from_checkpoint(path).predict(array_or_path)`` returns a ``Prediction`` with float32
class probabilities ``(K, *spatial)``, labels ``(*spatial)`` in the checkpoint's label values and
the input's ``Geometry``; the output always has the input's shape (inputs are mirrored up to a
size the network accepts and cropped back).

Strategy, chosen per input:

* 'same' networks: one forward over the whole image when it fits ``infer.memory_budget_mb``
  (``infer.window`` None), else Gaussian-blended tiles of the largest size that fits; when even
  the float32 class scores of the whole volume would not fit, labels are written region by
  region (``sliding_window_labels``) and no probabilities are returned.
* 'valid' networks: the overlap-tile strategy of the U-Net paper (``overlap_tile_inference``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import Config, InferConfig, apply_overrides, apply_values, config_from_dict
from unetkit.data.offset import shift_image
from unetkit.infer.boundaries import wall_decision
from unetkit.infer.network import (
    activation_bytes_per_voxel,
    choose_window,
    fuse_conv_bn,
    torch_network,
)
from unetkit.infer.overlap_tile import mirror_pad, overlap_tile_inference
from unetkit.infer.postprocess import postprocess
from unetkit.infer.regions import sliding_window_labels
from unetkit.infer.sliding_window import Network, Progress, mirror_tta, sliding_window_inference
from unetkit.train.device import PrecisionPlan, pick_device, resolve_precision

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One predicted case.

    Attributes:
        probabilities: ``(K, *spatial)`` float32 class probabilities (K = number of labels; a
            sigmoid model gives ``[1 - p, p]``), or None when memory-bounded mode was used.
        labels: ``(*spatial)`` label map holding the checkpoint's label values.
        geometry: the input's ``unetkit.data.io.Geometry`` (None for a bare array).
    """

    probabilities: np.ndarray | None
    labels: np.ndarray
    geometry: Any = None


class Predictor:
    """Runs a trained network on new images the way it was trained."""

    def __init__(
        self,
        network: Network,
        *,
        config: Config,
        labels: dict[int, str],
        normalization: dict[str, Any] | None = None,
        mask_values: dict[int, int] | None = None,
        plan: PrecisionPlan | None = None,
        model: torch.nn.Module | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        """Wrap a network callable (``(n, C_in, *S) -> (n, C_out, *S')`` float32 logits).

        Args:
            network: the network as a callable (see ``unetkit.infer.network.torch_network``).
            config: the training config (model sizes; ``config.infer`` drives inference).
            labels: ``{label value: name}``; class channel ``i`` is the ``i``-th sorted label.
            normalization: ``Normalizer.state_dict()`` from training (None: no normalisation).
            mask_values: ``{label: value stored in the training masks}`` (e.g. ``{0: 0, 1: 255}``).
            plan: the precision plan (for reporting and the memory estimate).
            model: the torch module behind ``network`` if any (for size rules).
            calibration: the checkpoint's threshold calibration (``unetkit.infer.calibration``),
                used where ``infer.threshold`` is ``auto``.
        """
        from unetkit.data.normalization import Normalizer

        self.network = network
        self.config = config
        self.labels = {int(k): str(v) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
        self.label_values = np.array(sorted(self.labels), dtype=np.int64)
        self.mask_values = {int(k): int(v) for k, v in (mask_values or {}).items()}
        self.normalizer = Normalizer.from_state_dict(normalization) if normalization else None
        self.plan = plan or PrecisionPlan(dtype=None, use_scaler=False, channels_last=False)
        self.model = model
        self.calibration = calibration
        self.config = _resolve_auto_threshold(config, calibration)
        self._check_settings()

    def _check_settings(self) -> None:
        dims = self.config.model.spatial_dims
        bad = [a for a in self.infer.tta_axes if not 0 <= a < dims]
        if bad:
            raise ValueError(f"infer.tta_axes {self.infer.tta_axes}: axes must be in 0..{dims - 1} "
                             f"for a {dims}D model")
        binary_rule = self.infer.threshold is not None or self.infer.postprocess.wall_seed_threshold
        if binary_rule and len(self.labels) != 2:
            raise ValueError(f"infer.threshold / infer.postprocess.wall_seed_threshold need a "
                             f"two-class model; this one has {len(self.labels)} labels")
        unseen = _unflipped_tta_axes(self.config)
        if unseen:
            log.warning("infer.tta_axes mirrors axes %s, which training never flipped "
                        "(data.augment.flip_axes %s, no rot90): the mirrored views are ones the "
                        "network has not learnt", unseen, self.config.data.augment.flip_axes)
        if self.infer.window is not None and len(self.infer.window) != dims:
            raise ValueError(f"infer.window {self.infer.window}: needs {dims} values for a "
                             f"{dims}D model")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        infer: InferConfig | None = None,
        settings: dict[str, Any] | None = None,
        overrides: Sequence[str] = (),
        device: str = "auto",
        onnx: str | Path | None = None,
    ) -> Predictor:
        """Load a checkpoint (file or run folder) and build the network on ``device``.

        Args:
            path: a checkpoint written by training (or a run folder holding ``best.pt``).
            infer: inference settings replacing the checkpoint's ``config.infer``.
            settings: ``{"infer.field": value}`` applied on top (e.g. from CLI options).
            overrides: ``section.field=value`` strings applied last (``--set``).
            device: ``"auto"``, ``"cpu"``, ``"cuda"``...
            onnx: run the network from this ONNX file in onnxruntime instead of PyTorch.
        """
        from unetkit.train.checkpoint import load_checkpoint, model_from_checkpoint

        checkpoint = load_checkpoint(path)
        config = _configure(config_from_dict(checkpoint["config"], source=str(path)), infer,
                            settings, overrides)
        target = pick_device(device)
        plan = resolve_precision(config.infer.precision, config.train.channels_last, target)
        model = model_from_checkpoint(checkpoint)
        if onnx is not None:
            from unetkit.infer.onnx_backend import onnx_network

            network = onnx_network(onnx)
            plan = PrecisionPlan(dtype=None, use_scaler=False, channels_last=False)
        else:
            network = torch_network(fuse_conv_bn(model), plan, target)
        log.info("predictor: %s, precision %s, channels_last %s", config.model.name, plan.name,
                 plan.channels_last)
        return cls(network, config=config, labels=checkpoint["labels"],
                   normalization=checkpoint.get("normalization"),
                   mask_values=checkpoint.get("mask_values"), plan=plan, model=model,
                   calibration=checkpoint.get("calibration"))

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        infer: InferConfig | None = None,
        settings: dict[str, Any] | None = None,
        overrides: Sequence[str] = (),
    ) -> Predictor:
        """Load an ONNX file written by ``unetkit export`` (metadata included) for onnxruntime.

        ``infer``, ``settings`` and ``overrides`` as in ``from_checkpoint``.
        """
        from unetkit.infer.onnx_backend import onnx_network, read_metadata
        from unetkit.nn import build_model

        meta = read_metadata(path)
        config = _configure(config_from_dict(meta["config"], source=str(path)), infer, settings,
                            overrides)
        sizes = build_model(config.model.name, **config.model.build_options())  # size rules only
        return cls(onnx_network(path), config=config, labels=meta["labels"],
                   normalization=meta.get("normalization"), mask_values=meta.get("mask_values"),
                   model=sizes, calibration=meta.get("calibration"))

    def update(self, settings: dict[str, Any]) -> None:
        """Change ``{"infer.field": value}`` settings after loading (not the precision)."""
        self.config = _resolve_auto_threshold(
            apply_values(self.config, settings, source="inference options"), self.calibration)
        self._check_settings()

    @property
    def infer(self) -> InferConfig:
        """The inference settings in use."""
        return self.config.infer

    def predict(
        self,
        image: np.ndarray | str | Path,
        *,
        probabilities: bool = True,
        progress: Progress | None = None,
    ) -> Prediction:
        """Predict one image: an array ``(C, *spatial)`` (raw intensities) or a file path.

        Args:
            image: raw image or path readable by ``unetkit.data.io.read_image``.
            probabilities: also return class probabilities (else only labels, less memory).
            progress: called as ``progress(done, total)`` over windows.

        Raises:
            ValueError: wrong number of channels or spatial axes (the message names the file).
        """
        geometry, source = None, "array"
        if isinstance(image, (str, Path)):
            from unetkit.data import io

            source = str(image)
            image, geometry = io.read_image(image)
        array = self._check_input(np.asarray(image), source)
        array = shift_image(array, self._image_offset())
        if self.normalizer is not None:
            array = self.normalizer(array)
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        scores = self._scores(x, need_scores=probabilities, progress=progress)
        if scores.dtype.is_floating_point:
            probs = self._activate(scores[0])
            classes = _decide(probs, self.infer)
        else:
            probs, classes = None, scores[0].numpy()
        classes = postprocess(classes, self.infer.postprocess)
        labels = self.label_values[classes.astype(np.int64)]
        out_dtype = np.uint8 if labels.max(initial=0) < 256 else np.int32
        probs_np = probs.numpy() if (probs is not None and probabilities) else None
        return Prediction(probs_np, labels.astype(out_dtype), geometry)

    def _image_offset(self) -> list[float] | None:
        """The training's ``data.image_offset`` (numbers; ``auto`` is resolved when training)."""
        offset = self.config.data.image_offset
        if offset == "auto":
            log.warning("data.image_offset is auto in this model's config but was never "
                        "measured; predicting without resampling")
            return None
        return offset

    def _check_input(self, array: np.ndarray, source: str) -> np.ndarray:
        model = self.config.model
        if array.ndim != model.spatial_dims + 1:
            raise ValueError(f"{source}: image of shape {array.shape} is not (C, *spatial) with "
                             f"{model.spatial_dims} spatial axes, as the model was trained")
        if array.shape[0] != model.in_channels:
            grey_rgb = model.in_channels == 1 and array.shape[0] in (3, 4) and all(
                np.array_equal(array[0], array[c]) for c in (1, 2))
            if not grey_rgb:
                raise ValueError(f"{source}: image has {array.shape[0]} channels, the model "
                                 f"expects {model.in_channels}")
            array = array[:1]
        return array

    def _scores(self, x: torch.Tensor, need_scores: bool, progress: Progress | None
                ) -> torch.Tensor:
        """``(1, C, *spatial)`` -> float32 blended logits, or uint8 class indices if bounded."""
        network = mirror_tta(self.network, self.infer.tta_axes)
        model = self.config.model
        multiple = 2**model.depth
        bpv = activation_bytes_per_voxel(model.widths[0] if model.widths else model.base_width,
                                         self.plan)
        budget = self.infer.memory_budget_mb
        if model.padding == "valid":
            return self._overlap_tile(x, network, bpv, progress)
        spatial = x.shape[2:]
        target = [math.ceil(n / multiple) * multiple for n in spatial]
        if self.infer.window is not None:
            target = [max(t, math.ceil(w / multiple) * multiple)
                      for t, w in zip(target, self.infer.window, strict=True)]
            window = tuple(math.ceil(w / multiple) * multiple for w in self.infer.window)
        else:
            window = choose_window(target, bpv, budget, multiple)
        before = [(t - n) // 2 for t, n in zip(target, spatial, strict=True)]
        after = [t - n - b for t, n, b in zip(target, spatial, before, strict=True)]
        padded = mirror_pad(x, before, after)
        crop = (slice(None), slice(None),
                *(slice(b, b + n) for b, n in zip(before, spatial, strict=True)))
        options = dict(gaussian=self.infer.gaussian, batch_size=self.infer.batch_size,
                       accumulate=self.infer.accumulate, progress=progress)
        channels = max(model.out_channels or 2, 1)
        score_bytes = channels * math.prod(target) * 4
        if not need_scores and score_bytes > budget * 2**20:
            log.info("predictor: class scores need %.0f MB > budget; labels by region",
                     score_bytes / 2**20)
            return sliding_window_labels(padded, network, window, self.infer.overlap,
                                         threshold=_logit(self.infer.threshold),
                                         **options)[crop[1:]]
        return sliding_window_inference(padded, network, window, self.infer.overlap,
                                        **options)[crop]

    def _overlap_tile(self, x: torch.Tensor, network: Network, bpv: int,
                      progress: Progress | None) -> torch.Tensor:
        model = self.model
        if model is None:
            raise ValueError("overlap-tile inference of a 'valid' network needs its torch model")
        spatial = tuple(x.shape[2:])
        smallest = model.nearest_valid_input_size(1)
        margin = (smallest[0] - model.output_size(smallest)[0]) // 2
        wanted = self.infer.window or choose_window(
            [n + 2 * margin for n in spatial], bpv, self.infer.memory_budget_mb, 1)
        tile = model.nearest_valid_input_size(wanted)
        return overlap_tile_inference(x, network, tile, [margin] * len(spatial),
                                      step_multiple=2**model.depth,
                                      batch_size=self.infer.batch_size, progress=progress)

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, *spatial)`` float32 logits -> ``(K, *spatial)`` float32 probabilities."""
        if logits.shape[0] == 1:
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p])
        return torch.softmax(logits, dim=0)

    def write_values(self, labels: np.ndarray) -> np.ndarray:
        """Label values -> the values the training masks stored (e.g. 1 -> 255), if recorded."""
        if not self.mask_values or all(k == v for k, v in self.mask_values.items()):
            return labels
        lut = np.arange(max(int(labels.max(initial=0)), *self.mask_values) + 1, dtype=np.int64)
        for label, value in self.mask_values.items():
            lut[label] = value
        return lut[labels]


def _configure(config: Config, infer: InferConfig | None, settings: dict[str, Any] | None,
               overrides: Sequence[str]) -> Config:
    if infer is not None:
        config = config.model_copy(update={"infer": infer})
    if settings:
        config = apply_values(config, settings, source="inference options")
    if overrides:
        config = apply_overrides(config, list(overrides))
    return config


def _logit(threshold: float | str | None) -> float:
    """Sigmoid-output decision level of a probability threshold (0.0 for None)."""
    if not isinstance(threshold, float):
        return 0.0
    return math.log(threshold / (1.0 - threshold))


def _resolve_auto_threshold(config: Config, calibration: dict[str, Any] | None) -> Config:
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


def _unflipped_tta_axes(config: Config) -> list[int]:
    """TTA axes that the training augmentation never mirrored (flip_axes without rot90)."""
    augment = config.data.augment
    if augment.flip_axes is None or (augment.rot90_prob > 0 and augment.enabled):
        return []
    flipped = set(augment.flip_axes) if augment.enabled and augment.flip_prob > 0 else set()
    return [a for a in config.infer.tta_axes if a not in flipped]


def _decide(probs: torch.Tensor, infer: InferConfig) -> np.ndarray:
    """``(K, *spatial)`` probabilities -> class indices (uint8); ties go to the lower class.

    Two classes: foreground where ``p >= infer.threshold`` when set, plus the seeded-watershed
    walls of ``infer.postprocess.wall_seed_threshold`` (``unetkit.infer.boundaries``).
    """
    post = infer.postprocess
    if probs.shape[0] == 2 and (infer.threshold is not None or post.wall_seed_threshold):
        foreground = wall_decision(probs[1].numpy(), infer.threshold or 0.5,
                                   post.wall_seed_threshold, post.wall_min_seed,
                                   post.wall_split_depth)
        return foreground.astype(np.uint8)
    return probs.argmax(0).to(torch.uint8 if probs.shape[0] <= 256 else torch.int64).numpy()
