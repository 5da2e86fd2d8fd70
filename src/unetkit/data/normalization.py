"""Intensity normalisation, per channel, on numpy arrays or torch tensors.

Schemes (``NormalizationConfig.scheme``):

* ``zscore``: per image, ``(x - mean) / std`` of that image (nnU-Net's default for MRI).
* ``zscore_dataset``: the same with mean/std fitted once on the training images.
* ``ct``: clip to the training set's foreground percentiles (default 0.5 / 99.5) then z-score with
  the foreground's mean/std (nnU-Net's CT scheme).
* ``window``: clip to a fixed ``[low, high]`` window, then map it to ``[0, 1]``.
* ``minmax``: per image, map ``[min, max]`` to ``[0, 1]``.
* ``none``: only cast to float32.

Fitted statistics travel with the model: ``state_dict()`` is a plain dict stored in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unetkit.config import NormalizationConfig

Array = np.ndarray | torch.Tensor
SCHEMES = ("zscore", "zscore_dataset", "ct", "window", "minmax", "none")
_EPS = 1e-8
_FIT_SAMPLES = 200_000


def _stat(x: Array, name: str, axes: tuple[int, ...]) -> Array:
    """Per-channel mean / std / min / max over ``axes`` keeping dims, for numpy or torch."""
    if isinstance(x, torch.Tensor):
        if name == "std":
            return x.std(dim=axes, keepdim=True, correction=0)
        return getattr(x, {"min": "amin", "max": "amax"}.get(name, name))(dim=axes, keepdim=True)
    return getattr(x, name)(axis=axes, keepdims=True)


def _const(x: Array, values: Sequence[float], channel_axis: int) -> Array:
    """Per-channel constants shaped to broadcast against ``x``."""
    shape = [1] * x.ndim
    shape[channel_axis] = len(values)
    if isinstance(x, torch.Tensor):
        return torch.tensor(values, dtype=x.dtype, device=x.device).reshape(shape)
    return np.asarray(values, dtype=x.dtype).reshape(shape)


def zscore(x: Array, mean: Array, std: Array) -> Array:
    """``(x - mean) / std``; a constant image (std 0) maps to 0, not NaN."""
    return (x - mean) / (std + _EPS)


def rescale(x: Array, low: Array, high: Array) -> Array:
    """Map ``[low, high]`` linearly to ``[0, 1]`` (no clipping)."""
    return (x - low) / (high - low + _EPS)


class Normalizer:
    """Per-channel intensity normalisation with optional fitted statistics.

    Call it on an image ``(C, *spatial)`` (or a batch ``(B, C, *spatial)`` with
    ``batched=True``), numpy or torch; the result is float32 of the same kind and shape.
    """

    def __init__(self, scheme: str = "zscore", percentiles: Sequence[float] = (0.5, 99.5),
                 window: Sequence[float] | None = None,
                 stats: dict[str, list[float]] | None = None):
        if scheme not in SCHEMES:
            raise ValueError(f"normalization scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        if scheme == "window" and window is None:
            raise ValueError("normalization scheme 'window' needs window=(low, high)")
        self.scheme = scheme
        self.percentiles = tuple(float(p) for p in percentiles)
        self.window = tuple(float(w) for w in window) if window is not None else None
        self.stats = dict(stats or {})

    @classmethod
    def from_config(cls, config: NormalizationConfig) -> Normalizer:
        """Build from ``data.normalization`` of the config (unfitted)."""
        return cls(config.scheme, config.percentiles, config.window)

    @property
    def needs_fit(self) -> bool:
        """True for schemes that use training-set statistics."""
        return self.scheme in ("zscore_dataset", "ct")

    @property
    def fitted(self) -> bool:
        """True when statistics are available (or not needed)."""
        return not self.needs_fit or "mean" in self.stats

    def fit(self, images: Sequence[np.ndarray],
            masks: Sequence[np.ndarray | None] | None = None) -> Normalizer:
        """Fit per-channel statistics on training images ``(C, *spatial)``.

        For ``ct`` the statistics come from foreground voxels (``mask > 0``) when masks are
        given, as nnU-Net does.  Other schemes keep no statistics (fit is a no-op).
        """
        if not self.needs_fit:
            return self
        if not images:
            raise ValueError("Normalizer.fit needs at least one image")
        channels = images[0].shape[0]
        samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
        per_image = max(1, _FIT_SAMPLES // len(images))
        for index, image in enumerate(images):
            if image.shape[0] != channels:
                raise ValueError(f"Normalizer.fit: image {index} has {image.shape[0]} channels, "
                                 f"expected {channels}")
            mask = masks[index] if masks is not None else None
            select = (mask > 0) if self.scheme == "ct" and mask is not None else None
            for c in range(channels):
                values = image[c][select] if select is not None and select.any() else image[c]
                values = np.asarray(values, dtype=np.float64).ravel()
                samples[c].append(values[:: max(1, values.size // per_image)])
        stats: dict[str, list[float]] = {"mean": [], "std": [], "low": [], "high": []}
        for c in range(channels):
            values = np.concatenate(samples[c])
            values = values[np.isfinite(values)]
            low, high = np.percentile(values, self.percentiles)
            if self.scheme == "ct":
                values = np.clip(values, low, high)
            for key, value in zip(stats, (values.mean(), values.std(), low, high), strict=False):
                stats[key].append(float(value))
        self.stats = stats
        return self

    def __call__(self, image: Array, batched: bool = False) -> Array:
        """Normalise ``(C, *spatial)`` (or ``(B, C, *spatial)`` if ``batched``) to float32."""
        if not self.fitted:
            raise RuntimeError(f"normalization scheme {self.scheme!r} needs fit() on the "
                               "training images (or from_state_dict) before use")
        x = image.float() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
        channel_axis = 1 if batched else 0
        axes = tuple(range(channel_axis + 1, x.ndim))
        if self.scheme == "zscore":
            return zscore(x, _stat(x, "mean", axes), _stat(x, "std", axes))
        if self.scheme == "minmax":
            return rescale(x, _stat(x, "min", axes), _stat(x, "max", axes))
        if self.scheme == "window":
            low, high = self.window  # type: ignore[misc]
            return rescale(x.clip(low, high), low, high)
        if self.scheme == "none":
            return x
        mean = _const(x, self.stats["mean"], channel_axis)
        std = _const(x, self.stats["std"], channel_axis)
        if self.scheme == "ct":
            low = _const(x, self.stats["low"], channel_axis)
            high = _const(x, self.stats["high"], channel_axis)
            x = torch.minimum(torch.maximum(x, low), high) if isinstance(x, torch.Tensor) \
                else np.clip(x, low, high)
        return zscore(x, mean, std)

    def state_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict (scheme, options and fitted statistics)."""
        return {"scheme": self.scheme, "percentiles": list(self.percentiles),
                "window": list(self.window) if self.window else None,
                "stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """Rebuild a (fitted) normaliser from ``state_dict()``."""
        return cls(state["scheme"], state.get("percentiles", (0.5, 99.5)), state.get("window"),
                   state.get("stats"))

    def __repr__(self) -> str:
        return f"Normalizer(scheme={self.scheme!r}, fitted={self.fitted})"
