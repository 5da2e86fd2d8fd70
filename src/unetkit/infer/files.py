"""Predict folders of files: input discovery, output naming and formats, failures per file.

Masks are written in the input's format and geometry (NIfTI keeps its affine, PNG stays PNG of
the same size); JPEG/BMP inputs give PNG masks (lossless), DICOM gives NIfTI, and 2D images whose
model was trained on 2D masks of another format give masks in that format
(``unetkit.infer.outputs``: DRIVE's TIFF photographs -> PNG like its masks). Label values are
written as the training masks stored them (``mask_values``, e.g. 255 for a 0/255 binary mask),
or as palette indices with ``palette=True``. One unreadable input never stops the batch. With
``roi_dir`` each case is restricted to its region of interest (``unetkit.infer.roi``).

Channel files of one case (nnU-Net's ``case_0000.nii.gz``, ``case_0001.nii.gz``) are grouped
by case id when every case of the batch has exactly the model's number of channels, numbered
from 0; the mask is then named by the case id (``case.nii.gz``), as nnU-Net names it, so
``unetkit evaluate PRED labelsTs`` pairs it with ``labelsTs/case.nii.gz``.

Inputs are never overwritten: before anything is predicted or written, ``check_outputs`` refuses
the whole batch (``OutputPathError``, naming the path) when the output folder is an input
folder, lies inside one or is the folder of an input file, when an output would land on an
input or on another input's output, or when an output path is a symbolic link (never followed).

``OUT/predict.json`` (``unetkit.infer.manifest``) records which input files each mask was
predicted from, for ``unetkit evaluate``'s overlays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetkit.data import io
from unetkit.data.dataset import CHANNEL_SUFFIX
from unetkit.infer.manifest import decision_record, write_manifest
from unetkit.infer.outputs import OutputPathError, Outputs, check_outputs, outputs_for  # noqa: F401
from unetkit.infer.predictor import Prediction, Predictor
from unetkit.runtime.atomic import WriteError, remove_partials, write_atomic

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class InputCase:
    """One case to predict: its id (the output's name) and its files, one per channel."""

    case_id: str
    paths: tuple[Path, ...]

    @property
    def source(self) -> Path:
        """The first channel's file (its format and geometry are the output's)."""
        return self.paths[0]


def input_cases(inputs: Sequence[str | Path], channels: int = 1) -> list[InputCase]:
    """The cases of a batch: files grouped by case id when they carry ``_NNNN`` channel
    suffixes and every group has ``channels`` files numbered ``0..channels-1``; else one case
    per file, named by the file."""
    files = collect_inputs(inputs)
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in files:
        match = CHANNEL_SUFFIX.match(path.name if path.is_dir() else io.split_suffix(path)[0])
        if match is None:
            groups = {}
            break
        groups.setdefault(match["case"], []).append((int(match["channel"]), path))
    grouped = bool(groups) and all(sorted(c for c, _ in members) == list(range(channels))
                                   for members in groups.values())
    if not grouped:
        return [InputCase(path.name if path.is_dir() else io.split_suffix(path)[0], (path,))
                for path in files]
    return [InputCase(case, tuple(p for _, p in sorted(members)))
            for case, members in sorted(groups.items())]


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


def hidden_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Supported image files in the given folders that ``collect_inputs`` skips because their
    names start with ``.`` (``..png``, macOS ``._a.png``): the caller says so; named one by one
    they are predicted."""
    return [p for item in map(Path, inputs) if item.is_dir() and not io.is_supported(item)
            for p in sorted(item.iterdir()) if p.name.startswith(".") and io.is_supported(p)]


def write_palette_png(path: Path, labels: np.ndarray) -> Path:
    """A 2-D label map as an indexed ('P' mode) PNG: pixel values are labels, colours shown."""
    from PIL import Image

    if labels.ndim != 2 or labels.max(initial=0) > 255:
        raise ValueError(f"{path}: a palette PNG holds 2-D labels 0..255, got shape "
                         f"{labels.shape}, max {labels.max(initial=0)}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [v for i in range(256) for v in PALETTE[i % len(PALETTE)]]
    image.putpalette(flat)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))  # named, not
    # guessed: Pillow finds no suffix in "..png"


def write_prediction(
    predictor: Predictor, prediction: Prediction, path: Path, *, palette: bool = False
) -> Path:
    """Write the labels of ``prediction`` at ``path`` in its geometry (and stored values)."""
    if palette and path.suffix.lower() == ".png":
        return write_palette_png(path, prediction.labels)
    values = predictor.write_values(prediction.labels)
    return write_atomic(path, lambda tmp: io.write_mask(tmp, values, prediction.geometry))


def write_probabilities(prediction: Prediction, path: Path) -> Path | None:
    """Probabilities ``(K, *spatial)`` at ``path`` (``Outputs.probabilities``) with geometry."""
    if prediction.probabilities is None:
        return None
    probabilities = prediction.probabilities.astype(np.float32)
    return write_atomic(path, lambda tmp: io.write_image(tmp, probabilities,
                                                         prediction.geometry))


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    save_probabilities: bool = False,
    overlay: Callable[..., object] | None = None,
    palette: bool = False,
    on_case: Callable[[Path, str | None], None] | None = None,
    roi_dir: str | Path | None = None,
    select: Callable[[list[InputCase]], Sequence[InputCase]] | None = None,
    force: bool = False,
    cover: Callable[[list[InputCase]], Sequence[InputCase]] | None = None,
) -> BatchResult:
    """Predict each input and write its mask (plus probabilities / overlay PNG) to ``out_dir``.

    Every file is written atomically (``unetkit.runtime.atomic``): a mask is whole or absent.

    Args:
        predictor: the loaded predictor.
        inputs: image files and/or folders (expanded by ``collect_inputs``).
        out_dir: output folder (created); never an input folder (``check_outputs``).
        save_probabilities: also write ``probabilities/<name>`` (NIfTI or ``.npz``).
        overlay: called as ``overlay(png_path, image, labels, affine=..., names=...,
            title=case id)`` to draw ``overlays/<name>.png`` (e.g.
            ``unetkit.report.save_overlay``: radiological slice of a volume, class names in the
            legend); None: no overlays.
        palette: PNG masks as indexed colour PNGs (values 0..K-1).
        on_case: called after each input with ``(path, error message or None)``.
        roi_dir: folder of regions of interest (``unetkit.infer.roi``): background outside
            each case's; a case without one fails. None: the whole image.
        select: given every case once all their outputs are checked, before anything is
            written, returns the cases to predict here (``unetkit.infer.shards``). None: all.
        force: replace files that exist at the outputs (earlier work); without it they are
            refused.
        cover: the cases this job writes, whose existing outputs are refused (one part of a
            job array, ``unetkit.infer.shards``); None: all.

    Returns:
        Written mask paths and the failed inputs with their error messages.

    Raises:
        OutputPathError: the outputs break the output rule (nothing written).
        WriteError: a file could not be written (disk full, permission): the batch stops,
            the files of the case in progress are removed; the message names the file.
    """
    from unetkit.data.dataset import Case, load_case
    from unetkit.infer.roi import find_roi, roi_files

    out_dir = Path(out_dir)
    rois = roi_files(roi_dir) if roi_dir is not None else None
    cases = input_cases(inputs, predictor.config.image_channels)
    plan = {case.source: outputs_for(case.source, out_dir, probabilities=save_probabilities,
                                     overlay=overlay is not None, name=case.case_id,
                                     mask_format=predictor.mask_format)
            for case in cases}
    given = [*inputs, *([roi_dir] if roi_dir is not None else [])]  # never written into
    check_outputs([Path(p) for p in given], plan, out_dir,
                  [p for case in cases for p in case.paths], force=force,
                  covered=None if cover is None else [c.source for c in cover(cases)])
    batch = [(plan[case.source].mask, case.paths) for case in cases]
    cases = list(cases if select is None else select(cases))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, batch, decision_record(predictor.infer,
                                                   predictor.config.data.regions))
    _remove_partials([plan[case.source] for case in cases])
    result = BatchResult()
    for case in cases:
        source, outputs, error, done = case.source, plan[case.source], None, []
        try:
            roi = find_roi(rois, case.case_id, source, roi_dir) if rois is not None else None
            image, _, geometry = load_case(Case(case.case_id, case.paths, None))
            _predict_case(predictor, case, image, geometry, roi, outputs, done,
                          save_probabilities=save_probabilities, overlay=overlay,
                          palette=palette)
        except WriteError as failure:  # the disk, not the case: every later case would fail
            for path in done:  # this run's files of the case: a case is whole or absent
                path.unlink(missing_ok=True)
            raise WriteError(f"{failure} (prediction stopped after {len(result.written)} "
                             f"mask(s); the files of {source.name} removed)", failure.errno,
                             failure.reason) from None
        except Exception as exc:  # one bad file must not stop the batch
            error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: skipped (%s)", source, error)
            result.failed.append((source, error))
        result.written += done[:1]  # the mask, when it was written
        if on_case is not None:
            on_case(source, error)
    return result


def _predict_case(predictor: Predictor, case: InputCase, image: np.ndarray, geometry: io.Geometry,
                  roi: Path | None, outputs: Outputs, done: list[Path], *,
                  save_probabilities: bool, overlay: Callable[..., object] | None,
                  palette: bool) -> None:
    """Predict one loaded case and write its files (mask, probabilities, overlay), each
    appended to ``done`` once it is written."""
    from unetkit.infer.roi import restrict_to_roi_file

    prediction = predictor.predict(image, probabilities=save_probabilities,
                                   source=str(case.source), spacing=geometry.spacing)
    prediction.geometry = geometry
    if roi is not None:
        restrict_to_roi_file(prediction, roi, int(predictor.label_values[0]))
    done.append(write_prediction(predictor, prediction, outputs.mask, palette=palette))
    if outputs.probabilities is not None:
        maps = write_probabilities(prediction, outputs.probabilities)
        done += [maps] if maps is not None else []
    if overlay is not None and outputs.overlay is not None:
        done.append(write_atomic(outputs.overlay, lambda tmp: overlay(
            tmp, image, prediction.labels, affine=geometry.affine, names=predictor.labels,
            title=case.case_id)))


def _remove_partials(plans: Sequence[Outputs]) -> None:
    """Remove temporary files an interrupted earlier run left for these outputs (only these
    names: other processes may be writing other cases into the same folders)."""
    names: dict[Path, set[str]] = {}
    for outputs in plans:
        for path in outputs.paths():
            names.setdefault(path.parent, set()).add(path.name)
    for folder, wanted in names.items():
        for path in remove_partials(folder, wanted):
            log.info("%s: removed the temporary file of an interrupted write", path)
