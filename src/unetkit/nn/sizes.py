"""Which input sizes a U-Net accepts, what it returns for them, and padding to an accepted size.

Size rules per spatial axis (``depth`` = number of poolings, ``strides`` their factor per level
and axis, 2 everywhere by default):

* ``padding='same'``: the output has the input's size; an axis is accepted when it is a positive
  multiple of the product of that axis' strides (:func:`axis_multiples`; ``2**depth`` by default),
  so every pooling divides an axis exactly.
* ``padding='valid'`` (Ronneberger et al. 2015; default strides only): every 3x3 convolution trims
  one voxel per side. An axis is accepted when the size before every pooling is even and no size
  drops below 1; the output is smaller by a constant margin (depth 4: 572 -> 388, 92 per side).

The pure functions work on one axis (``int``; ``multiple`` is that axis' product of strides); the
:class:`SizeMixin` methods on whole sizes. ``pad_spatial`` lives in ``unetkit.nn.padding``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from unetkit.nn.options import resolve_strides
from unetkit.nn.padding import pad_spatial

PAD_MODES = ("reflect", "replicate", "constant")
_SEARCH_LIMIT = 1 << 16


def axis_multiples(
    depth: int, strides: Sequence[int | Sequence[int]] | None = None, spatial_dims: int = 2
) -> tuple[int, ...]:
    """Per spatial axis, the product of its pooling strides ('same' sizes are multiples of it).

    ``strides`` as the models take them (``depth`` entries, each an int or one value per axis);
    None gives ``2**depth`` on every axis. E.g. ``axis_multiples(3, [[1, 2, 2], [2, 2, 2],
    [1, 2, 2]], 3) == (2, 8, 8)``.

    Raises:
        ValueError: ``strides`` is not valid for ``depth`` and ``spatial_dims``.
    """
    levels = resolve_strides(strides, depth, spatial_dims)
    return tuple(math.prod(level[axis] for level in levels) for axis in range(spatial_dims))


def model_multiples(model: object) -> tuple[int, ...]:
    """:func:`axis_multiples` of a model or ``ModelConfig`` (anything with ``depth``,
    ``spatial_dims`` and, if any, ``strides``)."""
    return axis_multiples(model.depth, getattr(model, "strides", None), model.spatial_dims)


def output_length(n: int, depth: int, padding: str, multiple: int | None = None) -> int | None:
    """Output length along one axis for input length ``n``, or ``None`` if ``n`` is not accepted.

    ``multiple``: the axis' product of strides ('same' only; None: ``2**depth``).
    """
    if n < 1:
        return None
    if padding == "same":
        return n if n % (multiple or 2**depth) == 0 else None
    if multiple not in (None, 2**depth):
        raise ValueError(f"padding='valid' needs 2x pooling on every axis (multiple {2**depth}), "
                         f"got multiple={multiple}")
    size = n
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4  # bottleneck
    if size < 1:
        return None
    for _ in range(depth):
        size = 2 * size - 4  # upsample, then two unpadded convolutions
        if size < 1:
            return None
    return size


def nearest_valid_length(
    n: int, depth: int, padding: str, mode: str = "up", multiple: int | None = None
) -> int | None:
    """Nearest accepted length ``>= n`` (``mode='up'``) or ``<= n`` (``'down'``); None if none.

    ``multiple`` as for :func:`output_length`.
    """
    if mode not in ("up", "down"):
        raise ValueError(f"mode must be 'up' or 'down', got {mode!r}")
    step = 1 if mode == "up" else -1
    candidate = max(n, 1) if mode == "up" else n
    for _ in range(_SEARCH_LIMIT):
        if candidate < 1:
            return None
        if output_length(candidate, depth, padding, multiple) is not None:
            return candidate
        candidate += step
    return None


def size_rule(depth: int, padding: str, multiples: Sequence[int] | None = None) -> str:
    """One sentence stating which sizes are accepted, for error messages and ``info``."""
    if padding == "same":
        if multiples is not None and len(set(multiples)) > 1:
            return (f"padding='same', depth={depth}, strides per axis: the sizes must be "
                    f"multiples of {tuple(multiples)}")
        multiple = multiples[0] if multiples else 2**depth
        return f"padding='same', depth={depth}: every size must be a multiple of {multiple}"
    return (
        f"padding='valid', depth={depth}: every size before a pooling must be even and no size "
        "may shrink below 1"
    )


def as_sizes(size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """``size`` as a tuple with one entry per spatial axis (an int is repeated)."""
    if isinstance(size, int) and not isinstance(size, bool):
        return (size,) * spatial_dims
    sizes = tuple(int(s) for s in size)
    if len(sizes) != spatial_dims:
        raise ValueError(
            f"size {tuple(size)} needs {spatial_dims} entries for a {spatial_dims}D model"
        )
    return sizes


class SizeMixin:
    """Size helpers for a model with attributes ``depth``, ``strides``, ``padding`` and
    ``spatial_dims``."""

    depth: int
    strides: tuple[tuple[int, ...], ...]
    padding: str
    spatial_dims: int
    in_channels: int

    def _lengths(
        self, sizes: tuple[int, ...], find: Callable[..., int | None], *args: object
    ) -> tuple:
        """``find(n, depth, padding, *args, multiple)`` for every axis ``n`` of ``sizes``."""
        multiples = model_multiples(self)
        return tuple(
            find(n, self.depth, self.padding, *args, m)
            for n, m in zip(sizes, multiples, strict=True)
        )

    def is_valid_input_size(self, size: int | Sequence[int]) -> bool:
        """True if every axis of ``size`` (spatial only) is accepted."""
        sizes = as_sizes(size, self.spatial_dims)
        return None not in self._lengths(sizes, output_length)

    def output_size(self, size: int | Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for spatial input ``size``; raises ``ValueError`` if not accepted."""
        sizes = as_sizes(size, self.spatial_dims)
        out = self._lengths(sizes, output_length)
        if None in out:
            raise ValueError(self._size_message(sizes))
        return out

    def nearest_valid_input_size(
        self, size: int | Sequence[int], mode: str = "up"
    ) -> tuple[int, ...]:
        """Nearest accepted spatial size per axis, ``>= size`` (``'up'``) or ``<= size``.

        Raises:
            ValueError: ``mode='down'`` and some axis has no accepted size below it.
        """
        sizes = as_sizes(size, self.spatial_dims)
        found = self._lengths(sizes, nearest_valid_length, mode)
        if None in found:
            smallest = self._lengths((1,) * self.spatial_dims, nearest_valid_length, "up")
            raise ValueError(
                f"no accepted size <= {sizes} ({self._rule()}); the smallest accepted size is "
                f"{smallest}"
            )
        return found

    def _rule(self) -> str:
        return size_rule(self.depth, self.padding, model_multiples(self))

    def _size_message(self, sizes: tuple[int, ...]) -> str:
        up = self._lengths(sizes, nearest_valid_length, "up")
        down = self._lengths(sizes, nearest_valid_length, "down")
        below = "none" if None in down else str(down)
        return (
            f"input size {sizes} is not accepted by {type(self).__name__} "
            f"({self._rule()}); nearest accepted sizes: {below} below, "
            f"{up} above. Crop, resize or pad it, e.g. with unetkit.nn.pad_to_valid(x, model)"
        )

    def _check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` before any layer runs if ``x`` cannot go through the model."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = ", ".join("DHW"[3 - self.spatial_dims :])
            raise ValueError(
                f"{type(self).__name__} expects input (B, {self.in_channels}, {axes}) for a "
                f"{self.spatial_dims}D model with in_channels={self.in_channels}; "
                f"got shape {tuple(x.shape)}"
            )
        sizes = tuple(x.shape[2:])
        if not self.is_valid_input_size(sizes):
            raise ValueError(self._size_message(sizes))


def valid_input_sizes(
    model: SizeMixin, max_size: int, min_size: int = 1, axis: int | None = None
) -> list[int]:
    """Accepted lengths in ``[min_size, max_size]``, ascending: of spatial axis ``axis``, or
    (``axis=None``) the lengths every axis accepts (all the same for default strides).

    Raises:
        ValueError: ``axis`` is not a spatial axis of the model.
    """
    multiples = model_multiples(model)
    if axis is not None:
        if not -model.spatial_dims <= axis < model.spatial_dims:
            raise ValueError(f"axis must be a spatial axis, 0..{model.spatial_dims - 1}, "
                             f"got {axis!r}")
        multiples = (multiples[axis],)
    return [
        n
        for n in range(max(min_size, 1), max_size + 1)
        if all(output_length(n, model.depth, model.padding, m) is not None for m in multiples)
    ]


def pad_to_valid(
    x: torch.Tensor, model: SizeMixin, mode: str = "reflect", value: float = 0.0
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad ``x`` to the smallest size the model accepts whose output covers all of ``x``.

    Padding is split evenly between both sides of every axis (the extra voxel goes after).
    ``mode='reflect'`` (default) mirrors the image without repeating the edge, ``'replicate'``
    repeats the edge, ``'constant'`` fills with ``value`` (zero padding). For 'valid' models the
    input is padded by the model's margin as well (the overlap-tile strategy of the U-Net paper).

    Args:
        x: ``(B, C, *spatial)`` tensor.
        model: a unetkit model (anything with ``depth``, ``padding``, ``spatial_dims`` and
            optionally ``strides``).
        mode: ``'reflect'`` | ``'replicate'`` | ``'constant'``.
        value: fill value for ``'constant'``.

    Returns:
        ``(padded, crop)``: ``padded`` is ``(B, C, *accepted)``; ``model(padded)[crop]`` is
        ``(B, out_channels, *spatial)``, aligned with ``x``.

    Raises:
        ValueError: unknown ``mode``, or reflect padding wider than the axis it pads.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad_to_valid: mode must be one of {PAD_MODES}, got {mode!r}")
    sizes = tuple(x.shape[2:])
    if len(sizes) != model.spatial_dims:
        raise ValueError(
            f"pad_to_valid: x has shape {tuple(x.shape)}, expected (B, C, *spatial) "
            f"with {model.spatial_dims} spatial axes"
        )
    pads: list[tuple[int, int]] = []
    crop: list[slice] = [slice(None), slice(None)]
    for n, multiple in zip(sizes, model_multiples(model), strict=True):
        target = _smallest_covering(n, model.depth, model.padding, multiple)
        out = output_length(target, model.depth, model.padding, multiple)
        assert out is not None and (target - out) % 2 == 0
        offset = (out - n) // 2
        before = (target - out) // 2 + offset
        pads.append((before, target - n - before))
        crop.append(slice(offset, offset + n))
        if mode == "reflect" and max(pads[-1]) >= n:
            raise ValueError(
                f"pad_to_valid: reflect padding of {max(pads[-1])} on an axis of size {n} is "
                "impossible (must be smaller than the axis); use mode='constant' or 'replicate'"
            )
    fill = {"reflect": "mirror"}.get(mode, mode)
    return pad_spatial(x, [b for b, _ in pads], [a for _, a in pads], fill, value), tuple(crop)


def _smallest_covering(n: int, depth: int, padding: str, multiple: int) -> int:
    """Smallest accepted length whose output length is at least ``n``."""
    candidate = nearest_valid_length(n, depth, padding, "up", multiple)
    while candidate is not None and output_length(candidate, depth, padding, multiple) < n:
        candidate = nearest_valid_length(candidate + 1, depth, padding, "up", multiple)
    if candidate is None:
        raise ValueError(f"no accepted size covers length {n} (depth={depth}, padding={padding})")
    return candidate
