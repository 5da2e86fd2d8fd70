"""Whole or absent: every file unetkit writes goes through ``atomic_path``.

A file is first written under a hidden temporary name in its own folder,
``.unetkit-partial-<token>-<name>`` (``PARTIAL_PREFIX``; the same folder, so the final
``os.replace`` is an atomic rename on one file system), flushed to disk (``fsync``) and only then
renamed to its name. A reader of the folder therefore sees the earlier file or the finished new
one, never a truncated one, whatever stops the writer (SIGTERM, a full disk, kill -9), and a name
that was a hard link of another file is re-pointed, never written through.

The temporary file is created with ``os.open(..., 0o666)``, so its mode is what the umask
allows, as for a file written by ``open()`` (``tempfile.mkstemp`` would give 0600: colleagues
on a shared server could not read a model). A write that fails removes its temporary file and
raises ``WriteError`` naming the path and the reason (``no space left on device: PATH``).
kill -9 cannot be caught: its temporary file stays until the next write of the same name in that
folder, or a resumed run, removes it (``remove_partials``).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

PARTIAL_PREFIX = ".unetkit-partial-"
_MAX_NAME = 255  # bytes in one file name on common file systems
T = TypeVar("T")


class WriteError(OSError):
    """A file could not be written (disk full, no permission, read-only file system); its
    partial file is removed and a file already at the path is unchanged.

    ``str()`` is the one-line message; ``errno`` and ``reason`` (the system's words) are kept.
    """

    def __init__(self, message: str, errno_: int | None = None, reason: str | None = None
                 ) -> None:
        super().__init__(message)
        self.errno = errno_
        self.reason = reason or message


def partial_name(path: Path) -> str:
    """The hidden temporary name of ``path`` (its full suffix kept: format writers choose the
    format by the suffix, ``.nii.gz`` included)."""
    token = secrets.token_hex(4)
    name = f"{PARTIAL_PREFIX}{token}-{path.name}"
    if len(name.encode()) > _MAX_NAME:  # a very long name: keep the suffixes only
        name = f"{PARTIAL_PREFIX}{token}-" + "".join(path.suffixes[-2:])[-32:]
    return name


def partial_target(name: str) -> str | None:
    """The file name a temporary file named ``name`` was written for, or None."""
    if not name.startswith(PARTIAL_PREFIX):
        return None
    token, dash, target = name[len(PARTIAL_PREFIX):].partition("-")
    return target if dash and len(token) == 8 else None


def remove_partials(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files a stopped writer left in ``folder`` (not recursive).

    Args:
        folder: the folder to clean; a missing folder has nothing to clean.
        names: only those written for these file names (safe while other processes write
            other names into the same folder); None: every one.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    wanted = None if names is None else set(names)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing or unreadable: nothing of ours to clean
        return []
    for entry in entries:
        target = partial_target(entry.name)
        if target is not None and (wanted is None or target in wanted):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def os_error(error: BaseException | None) -> OSError | None:
    """The system error behind ``error`` (one with an ``errno``), else None: torch.save on a
    full disk raises a RuntimeError whose context is the OSError of the failed write, while
    PIL raises a plain OSError without errno for an image it cannot encode (not a disk
    problem)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        error = error.__cause__ or error.__context__
    return None


def describe(path: Path, error: OSError) -> str:
    """One line for a failed write of ``path``."""
    if error.errno == errno.ENOSPC:
        return f"no space left on device: {path}"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: cannot write there ({error.strerror or error}): choose a writable place"
    return f"{path}: cannot write ({error.strerror or error})"


def write_error(path: Path, error: OSError, message: str | None = None) -> WriteError:
    """A ``WriteError`` for ``path`` (``errno`` kept; ``message`` replaces the default)."""
    reason = getattr(error, "reason", None) or error.strerror or str(error)
    return WriteError(message or describe(path, error), error.errno, reason)


def create_exclusive(path: Path) -> int:
    """A new file at ``path``, mode 0666 less the umask (as ``open()`` creates files); raises
    ``FileExistsError`` if anything is there. The one place unetkit creates a file."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                   0o666)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; write the file there, and on leaving the block
    it is flushed to disk and renamed to ``path``.

    An exception in the block (or SIGTERM under ``sigterm_exits``) removes the temporary file
    and leaves ``path`` as it was. A system error (disk full, permission) is raised as
    ``WriteError``; others (a format that cannot hold the data) as they are.

    Example::

        with atomic_path(out / "a.png") as tmp:
            Image.fromarray(labels).save(tmp)
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while tmp is None:
            candidate = path.parent / partial_name(path)
            try:
                os.close(create_exclusive(candidate))
                tmp = candidate
            except FileExistsError:
                continue
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        tmp = None
    except BaseException as error:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        cause = os_error(error) if isinstance(error, Exception) else None
        if cause is not None and not isinstance(error, WriteError):
            raise write_error(path, cause) from None
        raise


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(temporary path)`` under ``atomic_path``; returns ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


class Terminated(SystemExit):
    """SIGTERM arrived: raised where the program stands, so that ``atomic_path`` removes its
    temporary file on the way out (exit code 143, as the shell reports SIGTERM)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (main thread only; elsewhere a no-op)."""
    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal's signature
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
