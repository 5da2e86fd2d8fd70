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
STRIDES = (1, 2)
KERNEL_SIZES = (1, 3)

PerAxis = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Options:
    """Resolved, validated model options.

    ``widths`` and ``kernel_sizes`` have ``depth + 1`` entries (bottleneck last), ``strides``
    ``depth`` entries (pooling level 1 first); both hold one value per spatial axis.
    """

    in_channels: int
    out_channels: int
    spatial_dims: int
    widths: tuple[int, ...]
    depth: int
    strides: PerAxis
    kernel_sizes: PerAxis
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


def _is_list(value: object) -> bool:
    return not isinstance(value, (str, bytes)) and hasattr(value, "__len__")


def _per_axis_entry(name: str, entry: object, spatial_dims: int, allowed: tuple) -> tuple:
    """One level/stage: an int (broadcast to every axis) or one value per spatial axis."""
    values = (entry,) * spatial_dims if isinstance(entry, Integral) else entry
    if not _is_list(values):
        raise ValueError(
            f"{name} must be an int or a list of {spatial_dims} ints (one per spatial axis), "
            f"got {entry!r}"
        )
    if len(values) != spatial_dims:
        raise ValueError(
            f"{name} must have {spatial_dims} entries (one per spatial axis of a "
            f"{spatial_dims}D model) or be a single int, got {len(values)}: {list(values)}"
        )
    if any(isinstance(v, bool) or not isinstance(v, Integral) or v not in allowed for v in values):
        choices = " or ".join(map(str, allowed))
        raise ValueError(f"{name} must be {choices} on every axis, got {list(values)}")
    return tuple(int(v) for v in values)


def _per_axis(
    name: str, value: object, count: int, what: str, spatial_dims: int, allowed: tuple
) -> PerAxis:
    if not _is_list(value):
        raise ValueError(f"{name} must be a list of {count} entries ({what}), got {value!r}")
    if len(value) != count:
        raise ValueError(
            f"{name} must have {count} entries ({what}), got {len(value)}: {list(value)}; "
            f"change {name} or depth"
        )
    return tuple(
        _per_axis_entry(f"{name}[{i}]", entry, spatial_dims, allowed)
        for i, entry in enumerate(value)
    )


def resolve_strides(strides: object, depth: int, spatial_dims: int) -> PerAxis:
    """Pooling factor per level and axis: ``strides`` or 2 everywhere (``depth`` entries).

    Raises:
        ValueError: not ``depth`` entries, an entry of the wrong length, or a value other than
            1 or 2.
    """
    if strides is None:
        return ((2,) * spatial_dims,) * depth
    what = f"depth = {depth}, one per pooling level"
    return _per_axis("strides", strides, depth, what, spatial_dims, STRIDES)


def resolve_kernel_sizes(kernel_sizes: object, depth: int, spatial_dims: int) -> PerAxis:
    """Convolution kernel per encoder stage and axis: ``kernel_sizes`` or 3 everywhere.

    Raises:
        ValueError: not ``depth + 1`` entries, an entry of the wrong length, or a value other
            than 1 or 3.
    """
    if kernel_sizes is None:
        return ((3,) * spatial_dims,) * (depth + 1)
    what = f"depth + 1 = {depth + 1}, one per encoder stage, bottleneck last"
    return _per_axis("kernel_sizes", kernel_sizes, depth + 1, what, spatial_dims, KERNEL_SIZES)


def _check_valid_padding(padding: str, strides: PerAxis, kernel_sizes: PerAxis) -> None:
    uniform = all(s == 2 for level in strides for s in level) and all(
        k == 3 for stage in kernel_sizes for k in stage
    )
    if padding == "valid" and not uniform:
        raise ValueError(
            "padding='valid' supports only the default strides (2 on every axis) and "
            f"kernel_sizes (3 on every axis), got strides={[list(s) for s in strides]}, "
            f"kernel_sizes={[list(k) for k in kernel_sizes]}; use padding='same'"
        )


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
    strides: object = None,
    kernel_sizes: object = None,
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
    per_level = resolve_strides(strides, int(depth), int(spatial_dims))
    per_stage = resolve_kernel_sizes(kernel_sizes, int(depth), int(spatial_dims))
    _check_valid_padding(padding, per_level, per_stage)
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
        strides=per_level,
        kernel_sizes=per_stage,
        norm=norm,
        norm_groups=norm_groups,
        upsample=upsample,
        padding=padding,
        dropout=float(dropout),
    )
