"""Checkpoint -> network -> prediction, in explicit stages.

``Predictor.predict(image)`` is the chain of five stages, each callable on its own:

1. ``preprocess(image) -> (x, record)``: channel check, offset correction, resampling to the
   training's spacing, normalisation (``unetkit.data.preprocessing``);
2. ``predict_logits(x) -> (C, *S)``: TTA and the window strategy on preprocessed data
   (``unetkit.infer.strategy``; slice by slice for models trained on the slices of volumes);
3. ``restore(logits, record)``: back onto the input's grid (resampled before any decision);
4. ``decide(logits) -> classes``: threshold / arg-max / walls / regions (``infer.decision``);
5. ``postprocess(classes)``: connected-component clean-up; then label values.

Training validates and calibrates through stages 2 and 4 on its already preprocessed arrays.

When even the float class scores of the whole input would not fit ``infer.memory_budget_mb``,
``predict`` decides labels slab by slab (``sliding_window_labels``) and returns no probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.config import Config, InferConfig
from unetkit.data.preprocessing import Preprocessor, PreprocessRecord
from unetkit.data.sampling import with_slice_context
from unetkit.infer import decision
from unetkit.infer.boundaries import wall_decision
from unetkit.infer.placement import on_device_or_cpu
from unetkit.infer.postprocess import postprocess
from unetkit.infer.prediction import Prediction, label_map
from unetkit.infer.settings import check_image, check_settings, configure, resolve_auto_threshold
from unetkit.infer.strategy import Strategy
from unetkit.infer.tta import mirror_tta
from unetkit.infer.windows import Progress, sliding_window_labels
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.network import Network

log = logging.getLogger(__name__)


class Predictor:
    """Runs a trained network on new images the way it was trained."""

    def __init__(
        self,
        network: Network,
        *,
        config: Config,
        labels: dict[int, str],
        preprocessor: Preprocessor | None = None,
        mask_values: dict[int, int] | None = None,
        mask_format: str | None = None,
        plan: PrecisionPlan | None = None,
        calibration: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        engine: str = "torch",
    ) -> None:
        """Wrap a network callable (``(n, C_in, *S) -> (n, C_out, *S')`` float32 logits).

        Args:
            network: the network as a callable (``unetkit.runtime.network``).
            config: the training config (model sizes; ``config.infer`` drives inference).
            labels: ``{label value: name}``; class channel ``i`` is the ``i``-th sorted label.
            preprocessor: what images go through first (None: the config's offset only).
            mask_values: ``{label: value stored in the training masks}`` (e.g. ``{0: 0, 1: 255}``).
            mask_format: suffix of the training mask files; 2D images are written in it.
            plan: the precision plan (for reporting and the memory estimate).
            calibration: the checkpoint's threshold calibration, used where
                ``infer.threshold`` is ``auto``.
            device: where inputs, windows and accumulators live (the network's device; on
                the CPU after an out-of-memory error there, ``unetkit.infer.placement``).
                None: wherever each input already is.
            engine: what runs ``network`` (``"torch"`` or ``"onnxruntime"``), for reporting.
        """
        self.network = network
        self.labels = {int(k): str(v) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
        self.label_values = np.array(sorted(self.labels), dtype=np.int64)
        self.mask_values = {int(k): int(v) for k, v in (mask_values or {}).items()}
        self.mask_format = mask_format
        self.preprocessor = preprocessor or Preprocessor.offset_only(config.data)
        self.plan = plan or PrecisionPlan(dtype=None, use_scaler=False, channels_last=False)
        self.calibration = calibration
        self.device = torch.device(device) if device is not None else None
        self.engine = engine
        self.config = resolve_auto_threshold(config, calibration)
        check_settings(self.config, self.labels)
        self.region_order = config.data.regions_class_order if config.data.regions else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, infer: InferConfig | None = None,
                        settings: dict[str, Any] | None = None, overrides: Sequence[str] = (),
                        device: str = "auto", onnx: str | Path | None = None) -> Predictor:
        """Load a checkpoint (file or run folder); see ``unetkit.infer.loading``."""
        from unetkit.infer.loading import load_predictor

        return load_predictor(cls, path, infer=infer, settings=settings, overrides=overrides,
                              device=device, onnx=onnx)

    @classmethod
    def from_onnx(cls, path: str | Path, *, infer: InferConfig | None = None,
                  settings: dict[str, Any] | None = None, overrides: Sequence[str] = ()
                  ) -> Predictor:
        """Load an ONNX file written by ``unetkit export``; see ``unetkit.infer.loading``."""
        from unetkit.infer.loading import load_onnx_predictor

        return load_onnx_predictor(cls, path, infer=infer, settings=settings,
                                   overrides=overrides)

    def update(self, settings: dict[str, Any]) -> None:
        """Change ``{"infer.field": value}`` settings after loading (not the precision)."""
        self.config = resolve_auto_threshold(configure(self.config, settings=settings),
                                             self.calibration)
        check_settings(self.config, self.labels)

    @property
    def infer(self) -> InferConfig:
        """The inference settings in use."""
        return self.config.infer

    # --- the stages ---
    def preprocess(self, image: np.ndarray, source: str = "array",
                   spacing: Sequence[float] | None = None
                   ) -> tuple[torch.Tensor, PreprocessRecord]:
        """Raw ``(C, *spatial)`` image with voxel ``spacing`` (None: the training's) -> network
        input ``(C, *grid)`` float32 + record.

        Raises:
            ValueError: wrong number of channels or spatial axes, or a non-finite value (the
                message names ``source``).
        """
        array = check_image(np.asarray(image), self.config, source)
        array, record = self.preprocessor.preprocess(array, spacing)
        return torch.from_numpy(array), record

    def predict_logits(self, x: torch.Tensor | np.ndarray, progress: Progress | None = None
                       ) -> torch.Tensor:
        """Preprocessed ``(C_in, *S)`` -> blended, TTA-averaged logits ``(C_out, *S)`` float32,
        on the predictor's device (the CPU after an out-of-memory error there)."""
        x = torch.as_tensor(x, dtype=torch.float32)[None]
        return on_device_or_cpu(lambda device: self._logits(x.to(device), progress),
                                x.device if self.device is None else self.device)

    def _logits(self, x: torch.Tensor, progress: Progress | None) -> torch.Tensor:
        network, strategy = self.tta_network(), self.strategy()
        if self.config.model.padding == "valid":
            return strategy.overlap_tile(x, network, progress)[0]
        axis = self.config.data.slice_axis
        if axis is None:
            return strategy.blend(x, network, progress)[0]
        stack = with_slice_context(x[0].movedim(axis + 1, 0),  # 2D network over the slices
                                   self.config.data.slice_context)
        chunk = strategy.slices_per_batch(tuple(stack.shape[2:]))
        parts = [strategy.blend(stack[k:k + chunk], network, progress)
                 for k in range(0, stack.shape[0], chunk)]
        return torch.cat(parts).movedim(0, axis + 1)

    def predict_labels(self, x: torch.Tensor | np.ndarray, progress: Progress | None = None
                       ) -> np.ndarray:
        """Preprocessed ``(C_in, *S)`` -> classes ``(*S)`` decided slab by slab (bounded memory;
        no wall closing)."""
        x = torch.as_tensor(x, dtype=torch.float32)[None]
        network, strategy = self.tta_network(), self.strategy()

        def labels_on(device: torch.device) -> np.ndarray:
            padded, crop, window, overlap = strategy.windows(x.to(device), keep_scores=False)
            labels = sliding_window_labels(
                padded, network, window, overlap, **strategy.options(progress),
                decide=self._classes)
            return labels[(0, *crop)].cpu().numpy()

        return on_device_or_cpu(labels_on, x.device if self.device is None else self.device)

    def restore(self, scores: torch.Tensor, record: PreprocessRecord | None) -> torch.Tensor:
        """Scores (or classes) on the preprocessed grid -> the input's grid of ``record``."""
        return scores if record is None else self.preprocessor.restore(scores, record)

    def decide(self, logits: torch.Tensor) -> np.ndarray:
        """``(C, *S)`` logits -> class indices ``(*S)`` uint8 (threshold, walls, arg-max)."""
        post = self.infer.postprocess
        if post.wall_seed_threshold and logits.shape[0] <= 2:
            probability = decision.foreground_probability(logits).cpu().numpy()
            walls = wall_decision(probability, self._threshold() or 0.5, post.wall_seed_threshold,
                                  post.wall_min_seed, post.wall_split_depth)
            return walls.astype(np.uint8)
        return self._classes(logits).cpu().numpy()

    def postprocess(self, classes: np.ndarray) -> np.ndarray:
        """Connected-component clean-up of class indices (``infer.postprocess``)."""
        return postprocess(classes, self.infer.postprocess)

    # --- the chain ---
    def predict(self, image: np.ndarray | str | Path, *, probabilities: bool = True,
                progress: Progress | None = None, spacing: Sequence[float] | None = None,
                source: str = "array") -> Prediction:
        """Predict one image: an array ``(C, *spatial)`` (raw intensities) or a file path.

        Args:
            image: raw image or path readable by ``unetkit.data.io.read_image``.
            probabilities: also return class probabilities (else only labels, less memory).
            progress: called as ``progress(done, total)`` over windows.
            spacing: voxel spacing of an array input (a file's own spacing is read from it);
                None: the training's target spacing.
            source: what error messages call an array image (e.g. the file it came from).

        Raises:
            ValueError: the image does not fit the model or holds NaN/inf (names the source).
        """
        probs, classes, geometry = self.decide_image(image, probabilities, progress, spacing,
                                                     source)
        return Prediction(probs, label_map(self.postprocess(classes), self.label_values),
                          geometry, [r.name for r in self.config.data.regions or []] or None)

    def decide_image(self, image: np.ndarray | str | Path, probabilities: bool = True,
                     progress: Progress | None = None, spacing: Sequence[float] | None = None,
                     source: str = "array") -> tuple[np.ndarray | None, np.ndarray, Any]:
        """``predict`` before post-processing: ``(probabilities or None, classes, geometry)``."""
        geometry = None
        if isinstance(image, (str, Path)):
            from unetkit.data import io

            source = str(image)
            image, geometry = io.read_image(image)
            spacing = geometry.spacing
        x, record = self.preprocess(image, source, spacing)
        del image  # a file's raw array is not needed any more (memory_budget_mb)
        probs = None
        slices = self.config.data.slice_axis is not None
        if not probabilities and not slices and self.strategy().scores_exceed_budget(x):
            log.info("predictor: class scores exceed infer.memory_budget_mb; labels by region")
            classes = self.restore(torch.from_numpy(self.predict_labels(x, progress)), record)
            classes = classes.numpy()
        else:
            logits = self.restore(self.predict_logits(x, progress), record)
            del x
            classes = self.decide(logits)
            if probabilities:
                probs = self._probabilities(logits).cpu().numpy()
        return probs, classes, geometry

    def write_values(self, labels: np.ndarray) -> np.ndarray:
        """Label values -> the values the training masks stored (e.g. 1 -> 255), if recorded."""
        if not self.mask_values or all(k == v for k, v in self.mask_values.items()):
            return labels
        lut = np.arange(max(int(labels.max(initial=0)), *self.mask_values) + 1, dtype=np.int64)
        for label, value in self.mask_values.items():
            lut[label] = value
        return lut[labels]

    # --- helpers ---
    def tta_network(self) -> Network:  # an ensemble runs each member's own TTA instead
        return mirror_tta(self.network, self.infer.tta_axes)

    def strategy(self) -> Strategy:  # the window strategy under the current settings
        return Strategy(self.config, self.plan, self._out_channels())

    def _classes(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, *S)`` logits -> ``(*S)`` classes: regions painted, else threshold / arg-max."""
        return decision.decide(logits, self._threshold()) if self.region_order is None else \
            decision.decide_regions(logits, self.region_order)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, *S)`` logits -> class probabilities, or one sigmoid per region."""
        return (decision.probabilities if self.region_order is None
                else decision.region_probabilities)(logits)

    def _threshold(self) -> float | None:
        threshold = self.infer.threshold
        return float(threshold) if isinstance(threshold, float) else None

    def _out_channels(self) -> int:
        return max(self.config.model.out_channels or len(self.labels), 1)


__all__ = ["Prediction", "Predictor", "label_map"]
