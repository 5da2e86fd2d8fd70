"""What a model must satisfy before unetkit uses it: checks run on what a file holds, before any
network is built or any weight is used.

* ``newer_format``: a checkpoint (or export metadata) written by a newer unetkit is refused
  rather than read as if it were current.
* ``first_non_finite``: weights holding NaN or infinity (a diverged run) would give masks of
  garbage with exit code 0; the first such tensor is named.
* ``skeleton`` / ``too_large`` / ``shape_mismatch``: the network a config describes is built on
  PyTorch's meta device (shapes only, no memory), so a config asking for a billion-channel layer
  is refused before anything is allocated, and weights that do not fit are named before the real
  network is built.

Every check returns a message (or None); the caller adds the file's name and raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

MAX_PARAMETERS = 2**30  # ~1.07e9 weights (4 GiB in fp32): far above any U-Net that trains


def newer_format(version: Any, current: int) -> str | None:
    """Why a ``format_version`` cannot be read by this unetkit (reads up to ``current``), or
    None."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"format_version {version!r} is not a unetkit format (1 .. {current})"
    if version > current:
        return (f"written by a newer unetkit (format {version}, this one reads up to "
                f"{current}); upgrade unetkit to use it")
    return None


def unusable_weights(state: Any) -> str | None:
    """Why a checkpoint's ``model_state`` cannot be used (not a mapping of tensors, or a
    tensor holding NaN/inf), or None."""
    if not isinstance(state, Mapping):
        return "model_state is not a mapping of tensors (not a unetkit checkpoint)"
    return first_non_finite(state.items())


def first_non_finite(tensors: Iterable[tuple[str, Any]]) -> str | None:
    """The first floating-point tensor (or array) holding NaN or infinity, as a message naming
    it and how many of its values are bad; None when every value is finite."""
    for name, value in tensors:
        bad, total = _non_finite(value)
        if bad:
            return (f"weights are not finite: tensor {name!r} holds {bad} NaN/inf value(s) of "
                    f"{total} (training diverged?); this model would predict garbage")
    return None


def _non_finite(value: Any) -> tuple[int, int]:
    """``(non-finite values, values)`` of a tensor or array (``(0, n)`` for integers).

    CPU tensors are checked through NumPy, whose single-threaded ``isfinite(...).all()`` was
    5-10x faster than torch's on a loaded 2-core machine for a 90M-weight checkpoint; the
    values are counted only when one is bad.
    """
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.is_complex()):
            return 0, value.numel()
        if value.device.type != "cpu" or value.dtype == torch.bfloat16:  # NumPy has no bf16
            return value.numel() - int(torch.isfinite(value).sum()), value.numel()
        value = value.detach().numpy()
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.inexact) or np.isfinite(array).all():
        return 0, array.size
    return array.size - int(np.count_nonzero(np.isfinite(array))), array.size


def skeleton(name: str, options: Mapping[str, Any]) -> torch.nn.Module:
    """The network ``build_model(name, **options)`` returns, on the meta device: every
    parameter's shape, no memory and no arithmetic.

    Raises:
        ValueError: an option ``build_model`` refuses.
    """
    from unetkit.nn import build_model

    with torch.device("meta"):
        return build_model(name, **dict(options))


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameter values (a meta network's included)."""
    return sum(p.numel() for p in model.parameters())


def too_large(model: torch.nn.Module, options: Mapping[str, Any],
              limit: int = MAX_PARAMETERS) -> str | None:
    """Why a (meta) network is too large to build, naming the options that size it, or None."""
    count = parameter_count(model)
    if count <= limit:
        return None
    sizing = ", ".join(f"model.{key} {options[key]}" for key in
                       ("base_width", "widths", "depth", "in_channels", "out_channels")
                       if options.get(key) is not None)
    return (f"the network it describes has {count:.3g} parameters ({sizing}), more than the "
            f"{limit:.3g} unetkit builds; refused before allocating anything")


def shape_mismatch(model: torch.nn.Module, state: Mapping[str, Any]) -> str | None:
    """How ``state`` (a state_dict) fails to fit ``model`` (meta or real), or None when every key
    and shape matches."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and expected[k] != found[k]]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} tensor(s) of another shape, e.g. {k!r}: stored "
                     f"{list(found[k])}, the network has {list(expected[k])}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]!r}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]!r}")
    return "; ".join(parts) or None
