"""2.5D input: each slice of a volume with its neighbours as channels (``data.slice_context``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import Config, apply_overrides
from unetkit.data.sampling import to_slices, with_slice_context


def _stack(slices: int = 4, channels: int = 2) -> np.ndarray:
    """``(S, C, 3, 3)`` with every value ``10 * slice + channel``."""
    values = 10 * np.arange(slices)[:, None] + np.arange(channels)[None, :]
    return np.broadcast_to(values[:, :, None, None], (slices, channels, 3, 3)).astype(np.float32)


def test_each_slice_gets_its_neighbours_channel_by_channel_with_the_edges_repeated():
    out = with_slice_context(_stack(), 1)
    assert out.shape == (4, 6, 3, 3)
    # channel j * C + c is channel c of slice s - 1 + j, clipped to the volume
    assert out[0, :, 0, 0].tolist() == [0, 1, 0, 1, 10, 11]
    assert out[2, :, 0, 0].tolist() == [10, 11, 20, 21, 30, 31]
    assert out[3, :, 0, 0].tolist() == [20, 21, 30, 31, 30, 31]
    np.testing.assert_array_equal(with_slice_context(_stack(), 0), _stack())


def test_tensors_get_the_same_channels_as_arrays():
    stack = _stack(5, 1)
    expected = with_slice_context(stack, 2)
    got = with_slice_context(torch.from_numpy(stack), 2)
    assert isinstance(got, torch.Tensor) and got.shape == (5, 5, 3, 3)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_to_slices_with_context_keeps_the_masks_and_widens_the_images():
    image = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (C, X, Y, Z)
    mask = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 3
    images, masks = to_slices([image], [mask], axis=1, context=1)
    assert len(images) == 4 and images[0].shape == (6, 3, 5) and masks[0].shape == (3, 5)
    np.testing.assert_array_equal(images[1][2:4], image[:, :, 1])  # the slice itself, middle
    np.testing.assert_array_equal(images[1][0:2], image[:, :, 0])
    np.testing.assert_array_equal(images[3][4:6], image[:, :, 3])  # edge repeated
    np.testing.assert_array_equal(masks[2], mask[:, 2])


def test_slices_per_input_counts_only_for_sliced_volumes():
    assert Config().data.slices_per_input == 1
    sliced = apply_overrides(Config(), ["data.slice_axis=0", "data.slice_context=2"])
    assert sliced.data.slices_per_input == 5
    assert apply_overrides(Config(), ["data.slice_context=2"]).data.slices_per_input == 1
    with pytest.raises(ValueError, match="slice_context"):
        apply_overrides(Config(), ["data.slice_context=-1"])
