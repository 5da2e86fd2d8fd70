"""Training: ``fit`` (one run) and ``cross_validate`` (K folds under one budget), loaded on
first use so that importing a training module stays light."""

from typing import Any

__all__ = ["cross_validate", "fit"]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from unetkit.train.fit import fit

        return fit
    if name == "cross_validate":
        from unetkit.train.cross_validation import cross_validate

        return cross_validate
    raise AttributeError(f"module 'unetkit.train' has no attribute {name!r}")
