"""What happens to an image between its file and the network, and back: one ``Preprocessor``.

Training and prediction use the same object, so a model always sees new images exactly as it saw
its training cases. The steps, in order:

1. ``contrast``: local contrast equalisation (CLAHE, ``unetkit.data.contrast``) of the raw
   image, when ``data.normalization.contrast`` asks for it;
2. ``image_offset``: resample the image by the sub-voxel offset its masks were drawn with
   (``unetkit.data.offset``), so mirror augmentation keeps images and masks aligned;
3. ``target_spacing``: resample to the planned voxel spacing (``unetkit.data.resample``; images
   linear, label maps linear on one-hot), when the image's spacing differs from it;
4. intensity normalisation (``unetkit.data.normalization``), statistics fitted on the training
   cases and stored with the model.

``preprocess(image, spacing) -> (array, record)`` and ``restore(scores, record)`` are inverse in
space: ``restore`` brings a map computed on the preprocessed grid back onto the input's grid
(class scores linearly, before any decision; labels by nearest neighbour). The settings come
from ``data`` of the config; the fitted statistics from ``state_dict()`` (checkpoint key
``preprocessing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetkit.config import DataConfig
from unetkit.data.contrast import equalize
from unetkit.data.normalization import Normalizer
from unetkit.data.offset import estimate_offset, shift_image
from unetkit.data.resample import (
    needs_resampling,
    resample_image,
    resample_labels,
    resampled_shape,
)


@dataclass(frozen=True)
class PreprocessRecord:
    """What ``restore`` needs to go back to the input's grid.

    Attributes:
        shape: the input's spatial shape.
        grid: the spatial shape the network saw (``shape`` unless resampled).
    """

    shape: tuple[int, ...]
    grid: tuple[int, ...]


class Preprocessor:
    """Contrast equalisation, offset correction, resampling and normalisation of
    ``(C, *spatial)`` images.

    Args:
        normalizer: the intensity normalisation (None: intensities pass unchanged).
        image_offset: voxels per axis by which the masks lie off the images (None: none).
        target_spacing: spacing per axis to resample to (None, or None for an axis: keep).
        clahe_clip: CLAHE contrast limit applied first to the raw image (None: no CLAHE).
    """

    def __init__(self, normalizer: Normalizer | None = None,
                 image_offset: Sequence[float] | None = None,
                 target_spacing: Sequence[float | None] | None = None,
                 clahe_clip: float | None = None) -> None:
        self.normalizer = normalizer
        self.clahe_clip = clahe_clip
        self.image_offset = [float(v) for v in image_offset] if image_offset else None
        self.target_spacing = list(target_spacing) if target_spacing else None

    @classmethod
    def from_config(cls, data: DataConfig, state: dict[str, Any] | None = None) -> Preprocessor:
        """Settings from ``data``; fitted statistics from ``state`` (None: unfitted)."""
        stored = (state or {}).get("normalization")
        normalizer = (Normalizer.from_state_dict(stored) if stored
                      else Normalizer.from_config(data.normalization))
        offset = data.image_offset if isinstance(data.image_offset, list) else None
        clip = data.normalization.clahe_clip if data.normalization.contrast == "clahe" else None
        return cls(normalizer, offset, data.target_spacing, clip)

    @classmethod
    def offset_only(cls, data: DataConfig) -> Preprocessor:
        """No normalisation; only the config's (measured) image offset and target spacing."""
        offset = data.image_offset if isinstance(data.image_offset, list) else None
        return cls(None, offset, data.target_spacing)

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
            aligned = [shift_image(self._contrast(i), self.image_offset) for i in images]
            self.normalizer.fit(aligned, masks)
        return self

    def grid(self, shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[int, ...]:
        """The spatial shape the network sees for an input of ``shape`` and ``spacing``."""
        shape = tuple(int(n) for n in shape)
        if spacing is None or not needs_resampling(spacing, self.target_spacing):
            return shape
        return resampled_shape(shape, spacing, self.target_spacing)

    def preprocess(self, image: np.ndarray, spacing: Sequence[float] | None = None
                   ) -> tuple[np.ndarray, PreprocessRecord]:
        """``(C, *spatial)`` raw image (voxel ``spacing``; None: already at the target) ->
        ``(C, *grid)`` float32 network input + record."""
        shape = tuple(int(n) for n in image.shape[1:])
        record = PreprocessRecord(shape, self.grid(shape, spacing))
        array = shift_image(self._contrast(image), self.image_offset)
        if record.grid != shape:
            array = resample_image(array, record.grid)
        if self.normalizer is not None:
            array = self.normalizer(array)
        return np.ascontiguousarray(array, dtype=np.float32), record

    def _contrast(self, image: np.ndarray) -> np.ndarray:
        """The raw image as float32, CLAHE-equalised per channel when configured."""
        if self.clahe_clip is None:
            return np.asarray(image, dtype=np.float32)
        return equalize(image, self.clahe_clip)

    def preprocess_mask(self, mask: np.ndarray, record: PreprocessRecord) -> np.ndarray:
        """A training label map ``(*spatial)`` on the grid of its image's ``record``."""
        return resample_labels(mask, record.grid)

    def restore(self, scores: Any, record: PreprocessRecord) -> Any:
        """``(K, *grid)`` float scores (linear) or ``(*grid)`` labels (nearest) -> the input's
        grid of ``record``; numpy or torch."""
        spatial = tuple(scores.shape[-len(record.shape):])
        if spatial != record.grid:
            raise ValueError(f"restore: map of spatial shape {spatial} does not belong to the "
                             f"grid {record.grid} of this input")
        if record.grid == record.shape:
            return scores
        if scores.dtype.is_floating_point if hasattr(scores.dtype, "is_floating_point") \
                else np.issubdtype(scores.dtype, np.floating):
            return resample_image(scores, record.shape)
        return _nearest(scores, record.shape)

    def state_dict(self) -> dict[str, Any]:
        """Fitted statistics (plain dict; the settings live in the config)."""
        return {"normalization": self.normalizer.state_dict() if self.normalizer else None}


def _nearest(labels: Any, shape: Sequence[int]) -> Any:
    """Label map resized by nearest neighbour (voxel centres, ``align_corners=False``)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor)
                             else labels)
    out = F.interpolate(tensor[None, None].float(), size=tuple(shape), mode="nearest-exact")
    out = out[0, 0].to(tensor.dtype)
    return out if isinstance(labels, torch.Tensor) else out.numpy()
