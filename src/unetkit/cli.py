"""The ``unetkit`` command line: turns arguments into config and calls the library; no logic here."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="unetkit: train, predict, evaluate and export U-Net segmentation models.",
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# --- command: info ---

# --- command: check ---

# --- command: train ---

# --- command: demo ---

# --- command: predict ---

# --- command: evaluate ---

# --- command: export ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
