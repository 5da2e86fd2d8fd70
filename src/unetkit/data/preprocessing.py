"""What happens to an image between its file and the network, and back: one ``Preprocessor``.

Training and prediction use the same object, so a model always sees new images exactly as it saw
its training cases. The steps, in order:

1. ``image_offset``: resample the image by the sub-voxel offset its masks were drawn with
   (``unetkit.data.offset``), so mirror augmentation keeps images and masks aligned;
2. intensity normalisation (``unetkit.data.normalization``), statistics fitted on the training
   cases and stored with the model.

``preprocess(image) -> (array, record)`` and ``restore(scores, record)`` are inverse in space:
``restore`` brings a map computed on the preprocessed grid back onto the input's grid (today the
grids are identical; resampling adds a change of grid). The settings come from ``data`` of the
config; the fitted statistics from ``state_dict()`` (checkpoint key ``preprocessing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetkit.config import DataConfig
from unetkit.data.normalization import Normalizer
from unetkit.data.offset import estimate_offset, shift_image


@dataclass(frozen=True)
class PreprocessRecord:
    """What ``restore`` needs to go back to the input's grid: its spatial shape."""

    shape: tuple[int, ...]


class Preprocessor:
    """Offset correction and normalisation of ``(C, *spatial)`` images.

    Args:
        normalizer: the intensity normalisation (None: intensities pass unchanged).
        image_offset: voxels per axis by which the masks lie off the images (None: none).
    """

    def __init__(self, normalizer: Normalizer | None = None,
                 image_offset: Sequence[float] | None = None) -> None:
        self.normalizer = normalizer
        self.image_offset = [float(v) for v in image_offset] if image_offset else None

    @classmethod
    def from_config(cls, data: DataConfig, state: dict[str, Any] | None = None) -> Preprocessor:
        """Settings from ``data``; fitted statistics from ``state`` (None: unfitted)."""
        stored = (state or {}).get("normalization")
        normalizer = (Normalizer.from_state_dict(stored) if stored
                      else Normalizer.from_config(data.normalization))
        offset = data.image_offset if isinstance(data.image_offset, list) else None
        return cls(normalizer, offset)

    @classmethod
    def offset_only(cls, data: DataConfig) -> Preprocessor:
        """No normalisation; only the config's (measured) image offset."""
        return cls(None, data.image_offset if isinstance(data.image_offset, list) else None)

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
            image_offset: str | Sequence[float] | None = None) -> Preprocessor:
        """Fit on the training cases: measure the offset when ``auto``, then the normaliser.

        Args:
            images: raw training images ``(C, *spatial)``.
            masks: their label maps ``(*spatial)``.
            image_offset: ``data.image_offset``: numbers, ``"auto"`` (measured here) or None.
        """
        if image_offset == "auto":
            self.image_offset = estimate_offset(images, masks)
        elif image_offset is not None:
            self.image_offset = [float(v) for v in image_offset]
        if self.normalizer is not None and self.normalizer.needs_fit:
            aligned = [shift_image(np.asarray(i, np.float32), self.image_offset) for i in images]
            self.normalizer.fit(aligned, masks)
        return self

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, PreprocessRecord]:
        """``(C, *spatial)`` raw image -> ``(C, *spatial')`` float32 network input + record."""
        record = PreprocessRecord(tuple(int(n) for n in image.shape[1:]))
        array = shift_image(np.asarray(image, dtype=np.float32), self.image_offset)
        if self.normalizer is not None:
            array = self.normalizer(array)
        return np.ascontiguousarray(array, dtype=np.float32), record

    def preprocess_mask(self, mask: np.ndarray) -> np.ndarray:
        """A training label map on the preprocessed grid (the grid is the input's today)."""
        return mask

    def restore(self, scores: Any, record: PreprocessRecord) -> Any:
        """``(K, *spatial')`` scores or ``(*spatial')`` labels -> the input grid of ``record``."""
        spatial = tuple(scores.shape[-len(record.shape):])
        if spatial != record.shape:
            raise ValueError(f"restore: map of spatial shape {spatial} does not belong to an "
                             f"input of shape {record.shape}")
        return scores

    def state_dict(self) -> dict[str, Any]:
        """Fitted statistics (plain dict; the settings live in the config)."""
        return {"normalization": self.normalizer.state_dict() if self.normalizer else None}
