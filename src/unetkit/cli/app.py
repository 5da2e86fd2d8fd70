"""The typer application, its consoles and the one way a command fails."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="unetkit: train, predict, evaluate and export U-Net segmentation models.",
)


def _console(stderr: bool = False) -> Console:
    """A rich console that wraps lines only on a terminal: piped output keeps every message on
    one line (paths stay whole, grep finds them)."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out.soft_wrap = True
    return out


console = _console()
err_console = _console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test runner or a
    redirection may replace it between commands of one process)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201 - a text stream
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - logging assigns it once
        pass


def log_to_console(verbose: bool = True) -> None:
    """Show the ``unetkit`` logger on stderr (warnings only unless ``verbose``)."""
    from rich.logging import RichHandler

    logger = logging.getLogger("unetkit")
    handler = next((h for h in logger.handlers if getattr(h, "unetkit_console", False)), None)
    if handler is None:
        if err_console.is_terminal:
            handler = RichHandler(console=err_console, show_path=False, markup=False)
        else:  # one unwrapped line per record
            handler = _CurrentStderr()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.unetkit_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # The console shows warnings only when quiet; RUN/train.log always gets INFO.
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.setLevel(logging.INFO)
