"""Checkpoint -> network -> prediction, in explicit stages.

``Predictor.predict(image)`` is the chain of five stages, each callable on its own:

1. ``preprocess(image) -> (x, record)``: channel check, offset correction, normalisation
   (``unetkit.data.preprocessing``);
2. ``predict_logits(x) -> (C, *S)``: TTA and the window strategy on preprocessed data;
3. ``restore(logits, record)``: back onto the input's grid;
4. ``decide(logits) -> classes``: threshold / arg-max / wall closing (``unetkit.infer.decision``);
5. ``postprocess(classes)``: connected-component clean-up; then label values.

Training validates and calibrates through stages 2 and 4 on its already preprocessed arrays.

Window strategy of stage 2: 'same' networks run one forward over the whole (zero-padded) image
when it fits ``infer.memory_budget_mb``, else even Gaussian-blended tiles sized to the budget
(``unetkit.infer.tiling``); ``infer.window`` forces a window. When even the float class scores of
the whole input would not fit, ``predict`` decides labels slab by slab
(``sliding_window_labels``) and returns no probabilities. 'valid' networks use the overlap-tile
strategy of the U-Net paper (``overlap_tile_inference``).
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

from unetkit.config import Config, InferConfig
from unetkit.data.preprocessing import Preprocessor, PreprocessRecord
from unetkit.infer import decision, tiling
from unetkit.infer.boundaries import wall_decision
from unetkit.infer.overlap_tile import overlap_tile_inference
from unetkit.infer.postprocess import postprocess
from unetkit.infer.settings import check_image, check_settings, configure, resolve_auto_threshold
from unetkit.infer.tta import mirror_tta
from unetkit.infer.windows import Progress, sliding_window_inference, sliding_window_labels
from unetkit.nn.sizes import nearest_valid_length, output_length, pad_spatial
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.network import Network

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One predicted case.

    Attributes:
        probabilities: ``(K, *spatial)`` float32 class probabilities (K = number of labels; a
            sigmoid model gives ``[1 - p, p]``), or None when not asked for or memory-bounded.
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
        preprocessor: Preprocessor | None = None,
        mask_values: dict[int, int] | None = None,
        plan: PrecisionPlan | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        """Wrap a network callable (``(n, C_in, *S) -> (n, C_out, *S')`` float32 logits).

        Args:
            network: the network as a callable (``unetkit.runtime.network``).
            config: the training config (model sizes; ``config.infer`` drives inference).
            labels: ``{label value: name}``; class channel ``i`` is the ``i``-th sorted label.
            preprocessor: what images go through first (None: the config's offset only).
            mask_values: ``{label: value stored in the training masks}`` (e.g. ``{0: 0, 1: 255}``).
            plan: the precision plan (for reporting and the memory estimate).
            calibration: the checkpoint's threshold calibration, used where
                ``infer.threshold`` is ``auto``.
        """
        self.network = network
        self.labels = {int(k): str(v) for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
        self.label_values = np.array(sorted(self.labels), dtype=np.int64)
        self.mask_values = {int(k): int(v) for k, v in (mask_values or {}).items()}
        self.preprocessor = preprocessor or Preprocessor.offset_only(config.data)
        self.plan = plan or PrecisionPlan(dtype=None, use_scaler=False, channels_last=False)
        self.calibration = calibration
        self.config = resolve_auto_threshold(config, calibration)
        check_settings(self.config, self.labels)

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
    def preprocess(self, image: np.ndarray, source: str = "array"
                   ) -> tuple[torch.Tensor, PreprocessRecord]:
        """Raw ``(C, *spatial)`` image -> network input ``(C, *spatial')`` float32 + record.

        Raises:
            ValueError: wrong number of channels or spatial axes, or a non-finite value (the
                message names ``source``).
        """
        array = check_image(np.asarray(image), self.config, source)
        array, record = self.preprocessor.preprocess(array)
        return torch.from_numpy(array), record

    def predict_logits(self, x: torch.Tensor | np.ndarray, progress: Progress | None = None
                       ) -> torch.Tensor:
        """Preprocessed ``(C_in, *S)`` -> blended, TTA-averaged logits ``(C_out, *S)`` float32."""
        x = torch.as_tensor(x, dtype=torch.float32)[None]
        network = mirror_tta(self.network, self.infer.tta_axes)
        if self.config.model.padding == "valid":
            return self._overlap_tile(x, network, progress)[0]
        padded, crop, window, overlap = self._windows(x)
        logits = sliding_window_inference(padded, network, window, overlap, **self._options(
            progress))
        return logits[(0, slice(None), *crop)]

    def predict_labels(self, x: torch.Tensor | np.ndarray, progress: Progress | None = None
                       ) -> np.ndarray:
        """Preprocessed ``(C_in, *S)`` -> classes ``(*S)`` decided slab by slab (bounded memory;
        no wall closing)."""
        x = torch.as_tensor(x, dtype=torch.float32)[None]
        network = mirror_tta(self.network, self.infer.tta_axes)
        padded, crop, window, overlap = self._windows(x, keep_scores=False)
        labels = sliding_window_labels(
            padded, network, window, overlap, **self._options(progress),
            decide=lambda logits: decision.decide(logits, self._threshold()))
        return labels[(0, *crop)].cpu().numpy()

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
        return decision.decide(logits, self._threshold()).cpu().numpy()

    def postprocess(self, classes: np.ndarray) -> np.ndarray:
        """Connected-component clean-up of class indices (``infer.postprocess``)."""
        return postprocess(classes, self.infer.postprocess)

    # --- the chain ---
    def predict(self, image: np.ndarray | str | Path, *, probabilities: bool = True,
                progress: Progress | None = None, source: str = "array") -> Prediction:
        """Predict one image: an array ``(C, *spatial)`` (raw intensities) or a file path.

        Args:
            image: raw image or path readable by ``unetkit.data.io.read_image``.
            probabilities: also return class probabilities (else only labels, less memory).
            progress: called as ``progress(done, total)`` over windows.
            source: what error messages call an array image (e.g. the file it came from).

        Raises:
            ValueError: the image does not fit the model or holds NaN/inf (names the source).
        """
        geometry = None
        if isinstance(image, (str, Path)):
            from unetkit.data import io

            source = str(image)
            image, geometry = io.read_image(image)
        x, record = self.preprocess(image, source)
        probs = None
        if not probabilities and self._scores_exceed_budget(x):
            log.info("predictor: class scores exceed infer.memory_budget_mb; labels by region")
            classes = self.restore(torch.from_numpy(self.predict_labels(x, progress)), record)
            classes = classes.numpy()
        else:
            logits = self.restore(self.predict_logits(x, progress), record)
            classes = self.decide(logits)
            if probabilities:
                probs = decision.probabilities(logits).cpu().numpy()
        labels = self.label_values[self.postprocess(classes).astype(np.int64)]
        out_dtype = np.uint8 if labels.max(initial=0) < 256 else np.int32
        return Prediction(probs, labels.astype(out_dtype), geometry)

    def write_values(self, labels: np.ndarray) -> np.ndarray:
        """Label values -> the values the training masks stored (e.g. 1 -> 255), if recorded."""
        if not self.mask_values or all(k == v for k, v in self.mask_values.items()):
            return labels
        lut = np.arange(max(int(labels.max(initial=0)), *self.mask_values) + 1, dtype=np.int64)
        for label, value in self.mask_values.items():
            lut[label] = value
        return lut[labels]

    # --- helpers ---
    def _threshold(self) -> float | None:
        threshold = self.infer.threshold
        return float(threshold) if isinstance(threshold, float) else None

    def _bytes_per_voxel(self) -> int:
        model = self.config.model
        width = model.widths[0] if model.widths else model.base_width
        return tiling.forward_bytes_per_voxel(width, 4 if self.plan.dtype is None else 2)

    def _out_channels(self) -> int:
        return max(self.config.model.out_channels or len(self.labels), 1)

    def _scores_exceed_budget(self, x: torch.Tensor) -> bool:
        multiple = 2**self.config.model.depth
        voxels = math.prod(math.ceil(n / multiple) * multiple for n in x.shape[1:])
        return self._out_channels() * voxels * 4 > self.infer.memory_budget_mb * 2**20

    def _windows(self, x: torch.Tensor, keep_scores: bool = True
                 ) -> tuple[torch.Tensor, tuple[slice, ...], tuple[int, ...], Any]:
        """Zero-pad ``(1, C, *S)`` to the network's multiple; the crop back; window, overlap.

        Zeros (the mean of a normalised image), because training patches that reach past an
        image are filled with zeros (``PatchSampler``): mirrored borders are a context the
        network never saw (on hippocampus crops smaller than the patch: mean Dice 0.770 with
        mirrored, 0.811 with zero borders, same weights).
        """
        multiple = 2**self.config.model.depth
        spatial = tuple(x.shape[2:])
        target = [math.ceil(n / multiple) * multiple for n in spatial]
        if self.infer.window is not None:
            window = tuple(math.ceil(w / multiple) * multiple for w in self.infer.window)
            target = [max(t, w) for t, w in zip(target, window, strict=True)]
            overlap: Any = self.infer.overlap
        else:
            plan = tiling.plan_window(target, bytes_per_voxel=self._bytes_per_voxel(),
                                      out_channels=self._out_channels(),
                                      budget_mb=self.infer.memory_budget_mb, multiple=multiple,
                                      keep_scores=keep_scores)
            window, overlap = plan.window, plan.overlap
        before = [(t - n) // 2 for t, n in zip(target, spatial, strict=True)]
        after = [t - n - b for t, n, b in zip(target, spatial, before, strict=True)]
        crop = tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))
        return pad_spatial(x, before, after, "constant"), crop, window, overlap

    def _options(self, progress: Progress | None) -> dict[str, Any]:
        return dict(gaussian=self.infer.gaussian, batch_size=self.infer.batch_size,
                    accumulate=self.infer.accumulate, progress=progress)

    def _overlap_tile(self, x: torch.Tensor, network: Network, progress: Progress | None
                      ) -> torch.Tensor:
        depth = self.config.model.depth
        smallest = nearest_valid_length(1, depth, "valid")
        margin = (smallest - output_length(smallest, depth, "valid")) // 2
        spatial = tuple(x.shape[2:])
        wanted = self.infer.window or tiling.plan_window(
            [n + 2 * margin for n in spatial], bytes_per_voxel=self._bytes_per_voxel(),
            out_channels=self._out_channels(), budget_mb=self.infer.memory_budget_mb,
            multiple=1).window
        tile = [nearest_valid_length(w, depth, "valid") for w in wanted]
        return overlap_tile_inference(x, network, tile, [margin] * len(spatial),
                                      step_multiple=2**depth, batch_size=self.infer.batch_size,
                                      progress=progress)

