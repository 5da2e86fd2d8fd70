"""Connected-component post-processing on hand-made label maps."""

from __future__ import annotations

import numpy as np

from unetkit.config import PostprocessConfig
from unetkit.infer.postprocess import (
    fill_holes,
    keep_largest_component,
    postprocess,
    remove_small_components,
)


def two_blobs() -> np.ndarray:
    labels = np.zeros((8, 10), dtype=np.uint8)
    labels[1:4, 1:4] = 1  # 9 voxels
    labels[6, 8] = 1  # 1 voxel
    labels[5:8, 0:2] = 2  # 6 voxels
    labels[0, 9] = 2  # 1 voxel
    return labels


def test_keep_largest_component_per_class() -> None:
    out = keep_largest_component(two_blobs())
    assert (out == 1).sum() == 9 and out[6, 8] == 0
    assert (out == 2).sum() == 6 and out[0, 9] == 0
    only_one = keep_largest_component(two_blobs(), classes=[1])
    assert only_one[0, 9] == 2  # class 2 untouched


def test_diagonal_voxels_are_separate_components() -> None:
    labels = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=np.uint8)
    assert keep_largest_component(labels).tolist() == [[0, 0, 0], [0, 1, 1], [0, 0, 0]]


def test_remove_small_components() -> None:
    out = remove_small_components(two_blobs(), 2)
    assert out[6, 8] == 0 and out[0, 9] == 0
    assert (out == 1).sum() == 9 and (out == 2).sum() == 6
    only_big = np.zeros_like(two_blobs())
    only_big[1:4, 1:4] = 1  # the 6-voxel class-2 blob is below 7 as well
    assert np.array_equal(remove_small_components(two_blobs(), 7), only_big)
    assert np.array_equal(remove_small_components(two_blobs(), 0), two_blobs())


def test_fill_holes_only_on_background_3d() -> None:
    labels = np.zeros((5, 5, 5), dtype=np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[2, 2, 2] = 0  # a hole
    out = fill_holes(labels)
    assert out[2, 2, 2] == 1
    nested = labels.copy()
    nested[2, 2, 2] = 2  # another class inside is not painted over
    assert fill_holes(nested)[2, 2, 2] == 2
    open_ring = np.zeros((5, 5), np.uint8)
    open_ring[1:4, 1:4] = 1
    open_ring[2, 2] = 0
    open_ring[2, 3] = 0
    open_ring[2, 4] = 0  # connected to the border: not a hole
    assert fill_holes(open_ring)[2, 2] == 0


def test_postprocess_applies_configured_steps() -> None:
    labels = two_blobs()
    assert np.array_equal(postprocess(labels, PostprocessConfig()), labels)
    out = postprocess(labels, PostprocessConfig(keep_largest=True, min_size=2, fill_holes=True))
    assert np.array_equal(out, keep_largest_component(labels))
