"""The images the report's overlays are drawn on, and where they come from.

``--images DIR`` names them (matched by case, like the masks). Without it, predictions that
``unetkit predict`` wrote carry their record, ``PRED/predict.json`` (``unetkit.infer.manifest``),
naming the input files of every mask: those are used, so the overlays show the images without
an option. Otherwise (or for a file that is gone) the overlay is drawn on black and the log and
the report say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data import io
from unetkit.evaluate.matching import case_files, find_case
from unetkit.infer.manifest import MANIFEST, read_manifest

log = logging.getLogger(__name__)


@dataclass
class OverlayImages:
    """``files``: ``{case: image file}``; ``source``: a sentence saying where they come from
    (for the report); ``where``: the folder or record they come from; ``decision``: the
    threshold and TTA ``predict.json`` recorded, if any."""

    files: dict[str, Path] = field(default_factory=dict)
    source: str = ""
    where: str = ""
    decision: dict[str, Any] = field(default_factory=dict)


def find_images(pairs: list[tuple[str, Path, Path]], pred_dir: Path,
                images_dir: str | Path | None) -> OverlayImages:
    """The image of each ``(case, prediction, truth)`` pair: from ``images_dir`` when given,
    else from the prediction folder's ``predict.json`` (module doc)."""
    if images_dir is not None:
        folder = case_files(Path(images_dir), "images")
        found = {key: find_case(folder, key) for key, _, _ in pairs}
        return OverlayImages({k: p for k, p in found.items() if p is not None},
                             f"Overlays drawn on the images of {images_dir}.", str(images_dir))
    manifest, record = read_manifest(pred_dir), pred_dir / MANIFEST
    files = {key: manifest.cases[pred.name][0] for key, pred, _ in pairs
             if manifest.cases.get(pred.name)}
    if files:
        return OverlayImages(files, f"Overlays drawn on the images unetkit predict recorded in "
                             f"{record}{_decided(manifest.decision)}.", str(record),
                             manifest.decision)
    return OverlayImages({}, "Overlays drawn on black: the predictions name no images (they "
                         "were not written by unetkit predict); give them with --images.")


def _decided(decision: dict[str, Any]) -> str:
    """`` (threshold 0.51, TTA mirroring axes 0,1)`` of a ``predict.json`` decision."""
    if not decision:
        return ""
    threshold = decision.get("threshold")
    axes = decision.get("tta_axes") or []
    parts = [f"threshold {threshold:.2f}" if threshold is not None else "no threshold set",
             f"TTA mirroring axes {','.join(map(str, axes))}" if axes else "no TTA"]
    return f" (masks decided with {', '.join(parts)})"


def read_overlay_image(case: str, path: Path | None, shape: tuple[int, ...]) -> np.ndarray:
    """``(C, *shape)`` image of ``case`` for its overlay; black when ``path`` is None,
    unreadable or of another size (logged)."""
    image = None
    if path is not None:
        try:
            image = io.read_image(path)[0]
        except Exception as exc:  # an overlay without its image is still useful
            log.warning("%s: image %s not readable for the overlay (%s)", case, path, exc)
    if image is not None and image.shape[1:] != shape:
        log.warning("%s: image size %s differs from the mask's %s (overlay drawn on black)",
                    case, tuple(image.shape[1:]), shape)
        image = None
    return image if image is not None else np.zeros((1, *shape), np.float32)
