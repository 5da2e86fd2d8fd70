"""Predict folders of files: input discovery, output naming and formats, failures per file.

Masks are written in the input's format and geometry (NIfTI keeps its affine, PNG stays PNG of
the same size); JPEG/BMP inputs give PNG masks (lossless), DICOM gives NIfTI. Label values are
written as the training masks stored them (``mask_values``, e.g. 255 for a 0/255 binary mask),
or as palette indices with ``palette=True``. One unreadable input never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetkit.data import io
from unetkit.infer.predictor import Prediction, Predictor

log = logging.getLogger(__name__)

_OUTPUT_SUFFIX = {".jpg": ".png", ".jpeg": ".png", ".bmp": ".png", ".gif": ".png",
                  ".dcm": ".nii.gz"}

# label index -> RGB for palette PNGs and overlays (0 = background, black)
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
           (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
           (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0),
           (170, 255, 195)]


@dataclass
class BatchResult:
    """What a batch wrote and which inputs failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their supported files (sorted, not recursive).

    A folder that is itself a DICOM series counts as one input.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"input not found: {item}")
        if item.is_dir() and not io.is_supported(item):
            found += sorted(p for p in item.iterdir()
                            if not p.name.startswith(".") and io.is_supported(p))
        else:
            found.append(item)
    return found


def output_path(source: Path, out_dir: Path, tag: str = "") -> Path:
    """Mask path in ``out_dir`` with the input's file name (format kept where writable)."""
    stem, suffix = io.split_suffix(source)
    if source.is_dir():
        stem, suffix = source.name, ".nii.gz"
    suffix = _OUTPUT_SUFFIX.get(suffix, suffix)
    return out_dir / f"{stem}{tag}{suffix}"


def write_palette_png(path: Path, labels: np.ndarray) -> Path:
    """A 2-D label map as an indexed ('P' mode) PNG: pixel values are labels, colours shown."""
    from PIL import Image

    if labels.ndim != 2 or labels.max(initial=0) > 255:
        raise ValueError(f"{path}: a palette PNG holds 2-D labels 0..255, got shape "
                         f"{labels.shape}, max {labels.max(initial=0)}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [v for i in range(256) for v in PALETTE[i % len(PALETTE)]]
    image.putpalette(flat)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_prediction(
    predictor: Predictor, prediction: Prediction, path: Path, *, palette: bool = False
) -> Path:
    """Write the labels of ``prediction`` at ``path`` in its geometry (and stored values)."""
    if palette and path.suffix.lower() == ".png":
        return write_palette_png(path, prediction.labels)
    values = predictor.write_values(prediction.labels)
    return io.write_mask(path, values, prediction.geometry)


def write_probabilities(prediction: Prediction, source: Path, out_dir: Path) -> Path | None:
    """Probabilities ``(K, *spatial)`` as NIfTI for NIfTI inputs, else ``.npz`` with geometry."""
    if prediction.probabilities is None:
        return None
    geometry = prediction.geometry
    nifti = geometry is not None and geometry.format == "nifti"
    path = output_path(source, out_dir / "probabilities", "")
    stem = io.split_suffix(path)[0]
    path = path.with_name(stem + (".nii.gz" if nifti else ".npz"))
    return io.write_image(path, prediction.probabilities.astype(np.float32), geometry)


def predict_files(
    predictor: Predictor,
    inputs: Sequence[Path],
    out_dir: str | Path,
    *,
    save_probabilities: bool = False,
    overlay: Callable[[Path, np.ndarray, np.ndarray], object] | None = None,
    palette: bool = False,
    on_case: Callable[[Path, str | None], None] | None = None,
) -> BatchResult:
    """Predict each input and write its mask (plus probabilities / overlay PNG) to ``out_dir``.

    Args:
        predictor: the loaded predictor.
        inputs: image files (see ``collect_inputs``).
        out_dir: output folder (created).
        save_probabilities: also write ``probabilities/<name>`` (NIfTI or ``.npz``).
        overlay: called as ``overlay(png_path, image, labels)`` to draw
            ``overlays/<name>.png`` (e.g. ``unetkit.report.save_overlay``); None: no overlays.
        palette: PNG masks as indexed colour PNGs (values 0..K-1).
        on_case: called after each input with ``(path, error message or None)``.

    Returns:
        Written mask paths and the failed inputs with their error messages.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = BatchResult()
    for source in inputs:
        error = None
        try:
            image, geometry = io.read_image(source)
            prediction = predictor.predict(image, probabilities=save_probabilities)
            prediction.geometry = geometry
            result.written.append(write_prediction(
                predictor, prediction, output_path(source, out_dir), palette=palette))
            if save_probabilities:
                write_probabilities(prediction, source, out_dir)
            if overlay is not None:
                stem = io.split_suffix(output_path(source, out_dir))[0]
                overlay(out_dir / "overlays" / f"{stem}.png", image, prediction.labels)
        except Exception as exc:  # one bad file must not stop the batch
            error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: skipped (%s)", source, error)
            result.failed.append((source, error))
        if on_case is not None:
            on_case(source, error)
    return result
