"""``python -m unetkit`` (and ``torchrun -m unetkit``) runs the CLI."""

from unetkit.cli import main

main()
