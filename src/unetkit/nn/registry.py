"""Model names -> classes, and ``build_model(name, **options)`` with actionable errors."""

from __future__ import annotations

import contextlib
import difflib
import inspect
from typing import Any

from torch import nn

from unetkit.nn.models import AttentionUNet, ResUNet, UNet, UNetPlusPlus

MODELS: dict[str, type[nn.Module]] = {
    "unet": UNet,
    "resunet": ResUNet,
    "attention_unet": AttentionUNet,
    "unetplusplus": UNetPlusPlus,
}


def model_options(name: str) -> list[str]:
    """Keyword options accepted by model ``name`` (constructor parameters, in order)."""
    params = inspect.signature(_model_class(name).__init__).parameters
    return [p for p in params if p != "self"]


def _model_class(name: str) -> type[nn.Module]:
    key = str(name).strip().lower().replace("-", "_")
    if key not in MODELS:
        hint = difflib.get_close_matches(key, MODELS, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown model {name!r}{maybe}; known models: {', '.join(MODELS)}")
    return MODELS[key]


def build_model(name: str, **options: Any) -> nn.Module:
    """Build a model by name, e.g. ``build_model("unet", out_channels=3, norm="batch")``.

    Arguments are copied (a ``widths`` list passed in is never kept or mutated) and validated.

    Raises:
        ValueError: unknown name (lists the known ones), unknown option (lists the valid ones)
            or an invalid option value (names the option and what is allowed).
    """
    cls = _model_class(name)
    allowed = model_options(name)
    options = dict(options)
    for key in options:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(
                f"unknown option {key!r} for model {name!r}{maybe}; valid options: "
                f"{', '.join(allowed)}"
            )
    if options.get("widths") is not None and not isinstance(options["widths"], (str, bytes)):
        with contextlib.suppress(TypeError):  # resolve_widths reports a non-list
            options["widths"] = list(options["widths"])
    return cls(**options)
