"""The ``unetkit`` command line: arguments -> config -> library calls; no logic of its own.

One module per group of commands: ``data_commands`` (check, info), ``plan_commands`` (plan, config),
``train_commands`` (train, demo; their progress bar: ``train_progress``), ``predict_commands``
(predict, calibrate), ``report_commands`` (evaluate, export).
"""

from unetkit.cli import (  # noqa: F401  (registers the commands)
    data_commands,
    plan_commands,
    predict_commands,
    report_commands,
    train_commands,
)
from unetkit.cli.app import app, console, err_console, fail

__all__ = ["app", "console", "err_console", "fail", "main"]


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
