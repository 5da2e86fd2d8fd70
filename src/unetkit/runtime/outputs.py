"""The output rule, checked before a command starts its work.

No command writes over a file it did not create in this run, or over a file it reads, unless
``--force`` says so or replacing it is the command's documented purpose (``unetkit calibrate``
stores the threshold in the checkpoint it reads, after the data is validated; ``unetkit train
--resume`` continues its run folder). In particular an output is refused when it:

* is, or lies inside, a folder the command reads, or a folder of the data set an input comes
  from (``images/`` as input: ``masks/``, ``labels/``, ``roi/``, ... of the same data set);
* is a file the command reads, by name or as a hard link (never, ``--force`` or not);
* already exists (earlier work, whoever wrote it): only with ``--force``;
* cannot be written (a file where a folder is expected, a read-only folder): one line now,
  not a traceback after the work.

Every refusal is an ``OutputError`` naming the path and the option, raised before anything is
written. The writes themselves are atomic (``unetkit.runtime.atomic``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from unetkit.runtime.atomic import create_exclusive, partial_name

# Sub-folders unetkit reads as data (``unetkit.data.dataset``, ``unetkit.data.roi``), plus the
# nnU-Net test folders.
DATA_FOLDERS = ("images", "masks", "labels", "imagesTr", "labelsTr", "imagesTs", "labelsTs",
                "roi", "fov")


class OutputError(ValueError):
    """An output would replace an input or earlier work, or cannot be written there; nothing
    has been written."""


def data_folders(root: str | Path) -> list[Path]:
    """The existing folders of the data set at ``root`` that unetkit reads (``DATA_FOLDERS``)."""
    root = Path(root)
    return [root / name for name in DATA_FOLDERS if (root / name).is_dir()]


def data_set_of(folder: str | Path) -> Path | None:
    """The data set ``folder`` belongs to: itself when it holds data folders, its parent when it
    is one of them (``DATA/images`` -> ``DATA``) next to another; else None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if len(data_folders(folder)) >= 1 and folder.name not in DATA_FOLDERS:
        return folder
    if folder.name in DATA_FOLDERS and len(data_folders(folder.parent)) >= 2:
        return folder.parent
    return None


def protected_folders(reads: Iterable[str | Path], data_sets: Iterable[str | Path] = ()
                      ) -> dict[Path, tuple[str, bool]]:
    """``{resolved folder: (what it is, whether lying inside it is refused too)}``: the folders
    read and the data folders (``DATA_FOLDERS``, present or not: predictions written to a new
    ``labelsTs/`` would pass for ground truth) of ``data_sets`` and of every data set a read
    folder belongs to (``data_set_of``), refused with everything inside them; a data set's root
    itself (a new folder inside it, such as ``DATA/pred``, is read by nothing)."""
    found: dict[Path, tuple[str, bool]] = {}
    roots = [Path(d) for d in data_sets]
    for item in map(Path, reads):
        if item.is_dir():
            found.setdefault(item.resolve(), (f"input folder {item}", True))
            root = data_set_of(item)
            if root is not None:
                roots.append(root)
    for root in roots:
        found.setdefault(root.resolve(), (f"data set {root}", False))
        for name in DATA_FOLDERS:
            found.setdefault((root / name).resolve(), (f"folder {name}/ of the data set {root}",
                                                       True))
    return found


def check_outside(path: str | Path, option: str, protected: dict[Path, tuple[str, bool]],
                  inside_ok: Iterable[str | Path] = ()) -> None:
    """Refuse ``path`` when it is, or lies inside, a protected folder (``protected_folders``).

    Args:
        path: the output folder or file.
        option: the option that named it (``--out``), for the message.
        protected: ``{resolved folder: (description, inside refused)}``.
        inside_ok: folders an output may lie *inside* (not be): e.g. ``unetkit evaluate``'s
            default ``PRED/evaluation``.

    Raises:
        OutputError: naming the option, the path and the folder.
    """
    out = Path(path).resolve()
    allowed = {Path(p).resolve() for p in inside_ok}
    for folder, (what, whole) in protected.items():
        inside = whole and out.is_relative_to(folder) and out != folder and folder not in allowed
        if out == folder or inside:
            where = "is" if out == folder else "is inside"
            raise OutputError(f"{option} {path} {where} the {what}, which unetkit reads; write "
                              "the outputs somewhere else (nothing written)")


def folder_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be (made) a writable folder, or None: a file where a folder is
    expected, or the reason a probe file cannot be created in it (or in its nearest existing
    parent, where it would be created). Nothing is left behind: no folder is created."""
    path = Path(path)
    existing = path
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        probe = existing / partial_name(Path("probe"))
        os.close(create_exclusive(probe))
        probe.unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_folder(path: str | Path, option: str) -> None:
    """``path`` is, or can be made, a writable folder (``folder_problem``).

    Raises:
        OutputError: one line naming the option, the path and the reason.
    """
    problem = folder_problem(path)
    if problem is not None:
        raise OutputError(f"{option} {path}: cannot write there ({problem})")


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` are one file (the same path, a symbolic or a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_file(path: str | Path, option: str, *, reads: Sequence[str | Path] = (),
               force: bool = False) -> None:
    """One output file: not a folder, not a file the command reads (even with ``force``), not
    an existing file unless ``force``, in a writable folder (``check_folder``).

    Raises:
        OutputError: one line naming the option and the path; nothing written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; a file name is expected")
    for read in reads:
        if Path(read).exists() and path.exists() and same_file(path, read):
            link = "" if Path(read).resolve() == path.resolve() else " (a link to it)"
            raise OutputError(f"{option} {path}: is the input {read}{link}; unetkit never "
                              "writes over a file it reads: choose another name (nothing "
                              "written)")
    refuse_existing([path], option, force)
    problem = folder_problem(path.parent)
    if problem is not None:
        raise OutputError(f"{option} {path}: cannot write there ({problem})")


def refuse_existing(paths: Iterable[str | Path], option: str, force: bool) -> None:
    """Refuse to replace files that exist (earlier work) unless ``force``.

    Raises:
        OutputError: naming the first existing path and how many more there are.
    """
    if force:
        return
    found = [Path(p) for p in paths if Path(p).exists() or Path(p).is_symlink()]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise OutputError(f"{option}: {found[0]}{more} already exists; pass --force to replace "
                          "earlier outputs, or choose another place (nothing written)")
