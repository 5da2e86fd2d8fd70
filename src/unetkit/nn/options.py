"""Validation of the keyword options shared by every model; one clear ``ValueError`` per mistake.

Models call :func:`resolve_options` in their constructor, so a model built directly is checked
exactly like one built through :func:`unetkit.nn.build_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

from unetkit.nn.layers import NORMS

UPSAMPLES = ("transpose", "interpolate")
PADDINGS = ("same", "valid")
MAX_DEPTH = 6


@dataclass(frozen=True)
class Options:
    """Resolved, validated model options (``widths`` has ``depth + 1`` entries)."""

    in_channels: int
    out_channels: int
    spatial_dims: int
    widths: tuple[int, ...]
    depth: int
    norm: str
    norm_groups: int
    upsample: str
    padding: str
    dropout: float


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _choice(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def resolve_widths(base_width: int, widths: object, depth: int) -> tuple[int, ...]:
    """Channel widths per encoder stage, bottleneck last: ``widths`` or ``base * 2**i``.

    Raises:
        ValueError: ``widths`` has not ``depth + 1`` positive integers, or ``base_width`` < 1.
    """
    if widths is None:
        base = _positive_int("base_width", base_width)
        return tuple(base * 2**i for i in range(depth + 1))
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__"):
        raise ValueError(f"widths must be a list of {depth + 1} positive integers, got {widths!r}")
    if len(widths) != depth + 1:
        raise ValueError(
            f"widths must have depth + 1 = {depth + 1} entries (one per encoder stage, bottleneck "
            f"last), got {len(widths)}: {list(widths)}; change widths or depth"
        )
    return tuple(_positive_int(f"widths[{i}]", w) for i, w in enumerate(widths))


def resolve_options(
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int,
    base_width: int,
    widths: object,
    depth: int,
    norm: str,
    norm_groups: int,
    upsample: str,
    padding: str,
    dropout: float,
) -> Options:
    """Check every option and resolve the widths; raises ``ValueError`` naming the bad option."""
    in_channels = _positive_int("in_channels", in_channels)
    out_channels = _positive_int("out_channels", out_channels)
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if isinstance(depth, bool) or not isinstance(depth, Integral) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(
            f"depth (number of poolings) must be an integer from 1 to {MAX_DEPTH}, got {depth!r}"
        )
    _choice("norm", norm, NORMS)
    _choice("upsample", upsample, UPSAMPLES)
    _choice("padding", padding, PADDINGS)
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    norm_groups = _positive_int("norm_groups", norm_groups)
    resolved = resolve_widths(base_width, widths, int(depth))
    if norm == "group":
        bad = [w for w in resolved if w % norm_groups]
        if bad:
            raise ValueError(
                f"norm='group' needs every width divisible by norm_groups={norm_groups}, but "
                f"{bad} of widths {list(resolved)} are not; choose another norm_groups or widths"
            )
    return Options(
        in_channels=in_channels,
        out_channels=out_channels,
        spatial_dims=int(spatial_dims),
        widths=resolved,
        depth=int(depth),
        norm=norm,
        norm_groups=norm_groups,
        upsample=upsample,
        padding=padding,
        dropout=float(dropout),
    )
