"""Where predictions go: one naming rule for masks, probabilities and overlays, and the
check that refuses a batch whose outputs would touch an input (``unetkit.infer.files``).

Masks are written in the input's format where it is writable (JPEG/BMP/GIF give PNG, DICOM gives
NIfTI); 2D images whose model was trained on 2D masks of another format are written in the
masks' format (DRIVE: TIFF photographs, PNG masks -> PNG predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unetkit.data import io, io_medical

RASTER_2D = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif"}
_OUTPUT_SUFFIX = {".jpg": ".png", ".jpeg": ".png", ".bmp": ".png", ".gif": ".png",
                  ".dcm": ".nii.gz"}


class OutputPathError(ValueError):
    """Writing the outputs of a batch would touch an input or follow a symbolic link."""


@dataclass(frozen=True)
class Outputs:
    """Where one input's files go: the mask, and probabilities / overlay when asked for."""

    mask: Path
    probabilities: Path | None = None
    overlay: Path | None = None

    def paths(self) -> list[Path]:
        """The planned paths that are not None."""
        return [p for p in (self.mask, self.probabilities, self.overlay) if p is not None]


def output_path(source: Path, out_dir: Path, tag: str = "", name: str | None = None,
                mask_format: str | None = None) -> Path:
    """Mask path in ``out_dir`` named ``name`` (default: the input's file name), in the input's
    format where it is writable; a 2D image whose model was trained on 2D masks of another
    format (``mask_format``, e.g. DRIVE's TIFF photographs with PNG masks) in the masks'."""
    stem, suffix = io.split_suffix(source)
    if source.is_dir():
        stem, suffix = source.name, ".nii.gz"
    if mask_format and suffix.lower() in RASTER_2D and mask_format.lower() in RASTER_2D:
        suffix = mask_format.lower()
    suffix = _OUTPUT_SUFFIX.get(suffix, suffix)
    return out_dir / f"{name or stem}{tag}{suffix}"


def outputs_for(source: Path, out_dir: Path, *, probabilities: bool = False,
                overlay: bool = False, name: str | None = None,
                mask_format: str | None = None) -> Outputs:
    """The paths every writer of this module uses for ``source`` (one naming rule).

    Probabilities are NIfTI for NIfTI inputs, else ``.npz`` (with the geometry).
    """
    mask = output_path(source, out_dir, name=name, mask_format=mask_format)
    stem = io.split_suffix(mask)[0]
    nifti = not source.is_dir() and io.split_suffix(source)[1] in io_medical.NIFTI_SUFFIXES
    return Outputs(
        mask=mask,
        probabilities=(out_dir / "probabilities" / (stem + (".nii.gz" if nifti else ".npz"))
                       if probabilities else None),
        overlay=out_dir / "overlays" / f"{stem}.png" if overlay else None,
    )


def check_outputs(inputs: Sequence[Path], plan: dict[Path, Outputs], out_dir: Path,
                  files: Sequence[Path] = ()) -> None:
    """Refuse a batch whose outputs would modify an input or follow a symbolic link.

    Args:
        inputs: the inputs as given (files and folders).
        plan: ``{input file: its Outputs}`` for every case of the batch (its first file).
        out_dir: the output folder.
        files: every input file (the other channel files of a case included).

    Raises:
        OutputPathError: the first problem, naming the path; nothing has been written.
    """
    out = out_dir.resolve()
    folders = {Path(p).resolve(): "input folder" for p in inputs if Path(p).is_dir()}
    for source in plan:
        folders.setdefault(source.parent.resolve(), f"folder of the input {source}")
    for folder, what in folders.items():
        if out == folder or (what == "input folder" and out.is_relative_to(folder)):
            where = "is" if out == folder else "is inside"
            raise OutputPathError(f"--out {out_dir} {where} the {what} {folder}; write the "
                                  "predictions to a folder outside the inputs (nothing written)")
    taken = {source.resolve(): f"the input {source}" for source in [*plan, *files]}
    for source, outputs in plan.items():
        for path in outputs.paths():
            _check_output_path(path, out_dir, source, taken)


def _check_output_path(path: Path, out_dir: Path, source: Path, taken: dict[Path, str]) -> None:
    """One planned output: no symbolic link on the way from ``out_dir``, not a taken path."""
    for part in (path, *path.parents):
        if part == out_dir:
            break
        if part.is_symlink():
            raise OutputPathError(f"{part}: is a symbolic link, which unetkit does not follow; "
                                  "remove it or choose another --out (nothing written)")
    resolved = path.resolve()
    if resolved in taken:
        raise OutputPathError(f"{path}: the output for {source} would replace {taken[resolved]}; "
                              "rename one input or choose another --out (nothing written)")
    taken[resolved] = f"the output for {source}"
