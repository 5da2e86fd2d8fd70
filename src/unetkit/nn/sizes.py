"""Which input sizes a U-Net accepts, what it returns for them, and padding to an accepted size.

Size rules per spatial axis (``depth`` = number of 2x poolings):

* ``padding='same'``: the output has the input's size; an axis is accepted when it is a positive
  multiple of ``2**depth`` (so every pooling halves an even size).
* ``padding='valid'`` (Ronneberger et al. 2015): every 3x3 convolution trims one voxel per side.
  An axis is accepted when the size before every pooling is even and no size drops below 1;
  the output is smaller by a constant margin (depth 4: 572 -> 388, i.e. 92 per side).

The pure functions work on one axis (``int``); the :class:`SizeMixin` methods on whole sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PAD_MODES = ("reflect", "replicate", "constant")
SPATIAL_PAD_MODES = ("mirror", "replicate", "constant")
_SEARCH_LIMIT = 1 << 16


def output_length(n: int, depth: int, padding: str) -> int | None:
    """Output length along one axis for input length ``n``, or ``None`` if ``n`` is not accepted."""
    if n < 1:
        return None
    if padding == "same":
        return n if n % (2**depth) == 0 else None
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


def nearest_valid_length(n: int, depth: int, padding: str, mode: str = "up") -> int | None:
    """Nearest accepted length ``>= n`` (``mode='up'``) or ``<= n`` (``'down'``); None if none."""
    if mode not in ("up", "down"):
        raise ValueError(f"mode must be 'up' or 'down', got {mode!r}")
    step = 1 if mode == "up" else -1
    candidate = max(n, 1) if mode == "up" else n
    for _ in range(_SEARCH_LIMIT):
        if candidate < 1:
            return None
        if output_length(candidate, depth, padding) is not None:
            return candidate
        candidate += step
    return None


def size_rule(depth: int, padding: str) -> str:
    """One sentence stating which sizes are accepted, for error messages and ``info``."""
    if padding == "same":
        return f"padding='same', depth={depth}: every size must be a multiple of {2**depth}"
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
    """Size helpers for a model with attributes ``depth``, ``padding`` and ``spatial_dims``."""

    depth: int
    padding: str
    spatial_dims: int
    in_channels: int

    def is_valid_input_size(self, size: int | Sequence[int]) -> bool:
        """True if every axis of ``size`` (spatial only) is accepted."""
        sizes = as_sizes(size, self.spatial_dims)
        return all(output_length(n, self.depth, self.padding) is not None for n in sizes)

    def output_size(self, size: int | Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for spatial input ``size``; raises ``ValueError`` if not accepted."""
        sizes = as_sizes(size, self.spatial_dims)
        out = tuple(output_length(n, self.depth, self.padding) for n in sizes)
        if None in out:
            raise ValueError(self._size_message(sizes))
        return out  # type: ignore[return-value]

    def nearest_valid_input_size(
        self, size: int | Sequence[int], mode: str = "up"
    ) -> tuple[int, ...]:
        """Nearest accepted spatial size per axis, ``>= size`` (``'up'``) or ``<= size``.

        Raises:
            ValueError: ``mode='down'`` and some axis has no accepted size below it.
        """
        sizes = as_sizes(size, self.spatial_dims)
        found = tuple(nearest_valid_length(n, self.depth, self.padding, mode) for n in sizes)
        if None in found:
            smallest = nearest_valid_length(1, self.depth, self.padding, "up")
            raise ValueError(
                f"no accepted size <= {sizes} ({size_rule(self.depth, self.padding)}); "
                f"the smallest accepted size per axis is {smallest}"
            )
        return found  # type: ignore[return-value]

    def _size_message(self, sizes: tuple[int, ...]) -> str:
        up = tuple(nearest_valid_length(n, self.depth, self.padding, "up") for n in sizes)
        down = tuple(nearest_valid_length(n, self.depth, self.padding, "down") for n in sizes)
        below = "none" if None in down else str(down)
        return (
            f"input size {sizes} is not accepted by {type(self).__name__} "
            f"({size_rule(self.depth, self.padding)}); nearest accepted sizes: {below} below, "
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
        if not all(output_length(n, self.depth, self.padding) is not None for n in sizes):
            raise ValueError(self._size_message(sizes))


def valid_input_sizes(model: SizeMixin, max_size: int, min_size: int = 1) -> list[int]:
    """All accepted lengths of one axis in ``[min_size, max_size]``, ascending."""
    return [
        n
        for n in range(max(min_size, 1), max_size + 1)
        if output_length(n, model.depth, model.padding) is not None
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
        model: a unetkit model (anything with ``depth``, ``padding``, ``spatial_dims``).
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
    for n in sizes:
        target = _smallest_covering(n, model.depth, model.padding)
        out = output_length(target, model.depth, model.padding)
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


def pad_spatial(x: torch.Tensor, before: Sequence[int], after: Sequence[int],
                mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """Pad the spatial axes of ``x`` ``(B, C, *spatial)``; the one padding routine of unetkit.

    Modes: ``'mirror'`` reflects without repeating the border voxel (numpy's ``'reflect'``) for
    any pad length (a pad longer than the axis keeps reflecting back and forth), ``'replicate'``
    repeats the border voxel, ``'constant'`` fills with ``value``.

    Returns:
        ``(B, C, *(spatial + before + after))``; ``x`` itself when nothing is padded.
    """
    if mode not in SPATIAL_PAD_MODES:
        raise ValueError(f"pad_spatial: mode must be one of {SPATIAL_PAD_MODES}, got {mode!r}")
    before, after = [int(b) for b in before], [int(a) for a in after]
    if len(before) != x.dim() - 2 or len(after) != x.dim() - 2:
        raise ValueError(f"pad_spatial: {len(before)}/{len(after)} pads for {x.dim() - 2} "
                         "spatial axes")
    if not any(before) and not any(after):
        return x
    if mode != "mirror":
        flat = [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
        if mode == "constant":
            return F.pad(x, flat, mode="constant", value=value)
        return F.pad(x, flat, mode="replicate")
    for axis, (b, a) in enumerate(zip(before, after, strict=True)):
        n = x.shape[axis + 2]
        if b == 0 and a == 0:
            continue
        index = torch.arange(-b, n + a, device=x.device)
        if n == 1:
            index = torch.zeros_like(index)
        else:
            period = 2 * (n - 1)
            index = index.remainder(period)
            index = torch.where(index >= n, period - index, index)
        x = x.index_select(axis + 2, index)
    return x


def _smallest_covering(n: int, depth: int, padding: str) -> int:
    """Smallest accepted length whose output length is at least ``n``."""
    candidate = nearest_valid_length(n, depth, padding, "up")
    while candidate is not None and output_length(candidate, depth, padding) < n:
        candidate = nearest_valid_length(candidate + 1, depth, padding, "up")
    if candidate is None:
        raise ValueError(f"no accepted size covers length {n} (depth={depth}, padding={padding})")
    return candidate
