"""Where predictions go: one naming rule for masks, probabilities and overlays, and the
check that refuses a batch whose outputs would touch an input or replace earlier work
(``unetkit.infer.files``; the rule is ``unetkit.runtime.outputs``'s).

Masks are written in the input's format where it is writable (JPEG/BMP/GIF give PNG, DICOM gives
NIfTI); 2D images whose model was trained on 2D masks of another format are written in the
masks' format (DRIVE: TIFF photographs, PNG masks -> PNG predictions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unetkit.data import io, io_medical
from unetkit.runtime.outputs import (
    OutputError,
    check_folder,
    check_outside,
    data_set_of,
    protected_folders,
    refuse_existing,
)

RASTER_2D = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif"}
_OUTPUT_SUFFIX = {".jpg": ".png", ".jpeg": ".png", ".bmp": ".png", ".gif": ".png",
                  ".dcm": ".nii.gz"}


class OutputPathError(OutputError):
    """Writing the outputs of a batch would touch an input, follow a symbolic link or replace
    earlier work (``unetkit.runtime.outputs``); nothing has been written."""


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
                  files: Sequence[Path] = (), *, force: bool = False,
                  covered: Sequence[Path] | None = None) -> None:
    """Refuse a batch whose outputs break the output rule (``unetkit.runtime.outputs``).

    ``out_dir`` must be a writable folder, not an input folder or inside one, not the folder
    of an input file, not a folder of the data set an input comes from (``images/`` given:
    ``masks/``, ``roi/``, ... of the same data set); no output may follow a symbolic link, land
    on an input (by name or as a hard link) or on another input's output, or replace an
    existing file unless ``force``.

    Args:
        inputs: the inputs as given (files and folders).
        plan: ``{input file: its Outputs}`` for every case of the batch (its first file).
        out_dir: the output folder.
        files: every input file (the other channel files of a case included).
        force: replace files that exist at the outputs (earlier work).
        covered: the inputs (keys of ``plan``) whose outputs this job writes (its part of a
            job array); None: all.

    Raises:
        OutputPathError: the first problem, naming the path; nothing has been written.
    """
    try:
        check_folder(out_dir, "--out")
        check_outside(out_dir, "--out", _protected(inputs, plan))
    except OutputError as error:
        raise OutputPathError(str(error)) from None
    taken = {source.resolve(): f"the input {source}" for source in [*plan, *files]}
    inodes = {_inode(source): source for source in [*plan, *files] if source.is_file()}
    for source, outputs in plan.items():
        for path in outputs.paths():
            _check_output_path(path, out_dir, source, taken, inodes)
    try:
        refuse_existing([p for source in (plan if covered is None else covered)
                         for p in plan[source].paths()], "--out", force)
    except OutputError as error:
        raise OutputPathError(str(error)) from None


def _protected(inputs: Sequence[Path], plan: dict[Path, Outputs]) -> dict[Path, tuple[str, bool]]:
    """The input folders and data set folders (``protected_folders``) and, for input files,
    their folders (an output folder inside one is allowed) and those of their data sets."""
    parents = {source.parent for source in plan}
    found = protected_folders([Path(p) for p in inputs],
                              [root for root in map(data_set_of, parents) if root is not None])
    for source in plan:
        found.setdefault(source.parent.resolve(), (f"folder of the input {source}", False))
    return found


def _inode(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _check_output_path(path: Path, out_dir: Path, source: Path, taken: dict[Path, str],
                       inodes: dict[tuple[int, int], Path]) -> None:
    """One planned output: no symbolic link on the way from ``out_dir``, not a taken path, not
    a hard link of an input."""
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
    if path.is_file() and _inode(path) in inodes:
        raise OutputPathError(f"{path}: is a hard link of the input {inodes[_inode(path)]}; "
                              "unetkit never writes over a file it reads: choose another --out "
                              "(nothing written)")
    taken[resolved] = f"the output for {source}"
