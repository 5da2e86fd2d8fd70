"""The typer application, its consoles, log levels and the one way a command fails."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

LOG_LEVELS = ("debug", "info", "warning", "error")


class _FlagsWithoutType:
    """Help without a ``<bool>`` type hint next to flags (``--quiet``, ``--help``): a flag takes
    no value, so there is no type to show."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201 - click's signature
        _refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)


def _refuse_repeated_options(command, ctx, args: list[str]) -> None:  # noqa: ANN001 - click's
    """An option that takes one value, given twice, would silently keep the last one: in
    ``unetkit predict M a.png -o out -o.png`` the file ``-o.png`` reads as ``--out .png``.
    Refused with one line naming the option."""
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except Exception:  # noqa: BLE001 - malformed arguments: click reports them itself
        return
    for param in dict.fromkeys(order):
        times = order.count(param)
        single = not (getattr(param, "multiple", True) or getattr(param, "is_flag", True)
                      or getattr(param, "count", False))
        if times > 1 and single:
            fail(f"{' / '.join(param.opts)} given {times} times; give it once (a file whose "
                 "name starts with '-', such as -o.png, goes after -- or as ./-o.png)", code=2)


class _Group(_FlagsWithoutType, TyperGroup):
    pass


class _App(typer.Typer):
    """``typer.Typer`` whose commands render flags without a type hint."""

    def command(self, *args, cls=None, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _App(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    help="unetkit: train, predict, evaluate and export U-Net segmentation models.",
)


def _print_version(value: bool) -> None:
    if value:
        from unetkit import __version__

        typer.echo(f"unetkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the unetkit version and exit"),
) -> None:
    """unetkit: train, predict, evaluate and export U-Net segmentation models."""


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


def check_options(values: dict[str, Any], names: dict[str, str]) -> None:
    """Validate typed options (``{"section.field": value}``, None = not given) against the
    config schema before anything is read, so that an error names the option that set the
    field (``names``: ``{"train.lr": "--lr"}``); exits 2 on the first invalid one."""
    from rich.markup import escape

    from unetkit.config import Config, ConfigError, apply_values

    try:
        apply_values(Config(), values, source="options", names=names)
    except ConfigError as error:
        fail(escape(str(error)), code=2)


def require_positive(value: float | None, option: str, hint: str = "") -> None:
    """Exit 2 naming ``option`` unless ``value`` (when given) is a finite number above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        fail(f"{option} {value:g}: expected a positive number{hint}", code=2)


def log_level(name: str | None, default: str) -> str:
    """``--log-level`` checked: one of ``LOG_LEVELS`` (``default`` when not given)."""
    level = (name or default).strip().lower()
    if level not in LOG_LEVELS:
        fail(f"--log-level {name!r}: expected one of {', '.join(LOG_LEVELS)}", code=2)
    return level


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


def log_to_console(verbose: bool = True, level: str | None = None) -> None:
    """Show the ``unetkit`` logger on stderr from ``level`` up (``debug`` ... ``error``);
    without ``level``: INFO when ``verbose``, else warnings only.

    A run folder's ``train.log`` gets INFO and up whatever the console shows (DEBUG too when
    the console shows it).
    """
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
    number = getattr(logging, level.upper()) if level else \
        logging.INFO if verbose else logging.WARNING
    handler.setLevel(number)
    logger.setLevel(min(number, logging.INFO))
