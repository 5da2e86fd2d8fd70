"""The overlap-tile strategy of the 2015 U-Net paper, for 'valid' (unpadded) networks.

A 'valid' network maps an input tile to a smaller output: ``out = tile - 2 * margin`` per axis.
The image is extended at its borders by mirroring, then cut into input tiles whose outputs sit
side by side; neighbouring input tiles overlap only by the ``2 * margin`` context the network
consumes. There is no blending: every output voxel comes from exactly one tile.

Networks with pooling are translation-equivariant only for shifts that are multiples of
``2 ** depth``; ``step_multiple`` makes every tile start on that grid (output tiles then overlap
by a few voxels and the later tile's values are dropped), so the stitched result equals one
whole-image forward over the mirrored input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from unetkit.infer.windows import Progress
from unetkit.nn.sizes import pad_spatial
from unetkit.runtime.network import Network


def _box(origin: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(origin, size, strict=True))


def tile_origins(size: int, out_tile: int, step: int) -> list[int]:
    """Output-tile origins along one axis: multiples of ``step`` until ``size`` is covered."""
    return [i * step for i in range(math.ceil(max(size - out_tile, 0) / step) + 1)]


def overlap_tile_inference(
    x: torch.Tensor,
    network: Network,
    tile: Sequence[int],
    margin: Sequence[int],
    *,
    step_multiple: int = 1,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run a 'valid' network over ``x`` tile by tile with mirrored borders.

    Args:
        x: input ``(B, C_in, *spatial)``.
        network: maps ``(n, C_in, *tile)`` to ``(n, C_out, *(tile - 2 * margin))``.
        tile: input tile size per spatial axis (a valid input size of the network).
        margin: context consumed on each side per axis (``(tile - output) / 2``).
        step_multiple: tile origins are multiples of this (``2 ** depth`` for a U-Net).
        batch_size: tiles per network call.
        progress: called as ``progress(done_tiles, total_tiles)``.

    Returns:
        ``(B, C_out, *spatial)`` float32 outputs.
    """
    spatial = tuple(x.shape[2:])
    tile, margin = tuple(int(t) for t in tile), tuple(int(m) for m in margin)
    if len(tile) != len(spatial) or len(margin) != len(spatial):
        raise ValueError(f"tile {tile} / margin {margin} need one value per spatial axis "
                         f"of the input {spatial}")
    out_tile = tuple(t - 2 * m for t, m in zip(tile, margin, strict=True))
    steps = tuple(o - o % step_multiple for o in out_tile)
    if any(s <= 0 for s in steps):
        raise ValueError(f"tile {tile} with margin {margin} leaves output {out_tile}, smaller "
                         f"than the alignment step {step_multiple}: use a larger tile")
    origins = [tile_origins(n, o, s) for n, o, s in zip(spatial, out_tile, steps, strict=True)]
    extent = [og[-1] + o for og, o in zip(origins, out_tile, strict=True)]
    after = [e - n + m for e, n, m in zip(extent, spatial, margin, strict=True)]
    padded = pad_spatial(x, margin, after, "mirror")
    tiles = list(itertools.product(*origins))
    result = None
    done = 0
    for index in range(0, len(tiles), batch_size):
        group = tiles[index:index + batch_size]
        inputs = [padded[(slice(None), slice(None), *_box(origin, tile))] for origin in group]
        out = network(torch.cat(inputs)).float()
        if tuple(out.shape[2:]) != out_tile:
            raise ValueError(f"network output {tuple(out.shape[2:])} for tile {tile} is not the "
                             f"expected {out_tile}: check tile and margin")
        if result is None:
            result = torch.zeros((x.shape[0], out.shape[1], *extent), device=x.device)
        for k, origin in enumerate(group):
            # later tiles overwrite the overlap, so each voxel ends with the tile aligned to it
            batch = x.shape[0]
            result[(slice(None), slice(None), *_box(origin, out_tile))] = \
                out[k * batch:(k + 1) * batch]
        done += len(group)
        if progress:
            progress(done, len(tiles))
    return result[(slice(None), slice(None), *(slice(0, n) for n in spatial))]
