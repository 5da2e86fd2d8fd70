"""Patch sampling: sizes, padding, foreground oversampling, seeding, workers and ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.sampling import PatchSampler, extract_patch, patch_start
from unetkit.train.builders import epoch_batches


def _cases(n=3, shape=(40, 50), seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        images.append(rng.random((2, *shape)).astype(np.float32))
        mask = np.zeros(shape, np.int64)
        mask[tuple(int(rng.integers(0, s - 1)) for s in shape)] = 1  # one voxel of class 1
        mask[:2, :2] = 2
        masks.append(mask)
    return images, masks


def test_extract_patch_pads_outside():
    array = np.arange(12).reshape(1, 3, 4)
    out = extract_patch(array, [-1, 2], [4, 3], pad_value=-1)
    expected = np.array([[-1, -1, -1], [2, 3, -1], [6, 7, -1], [10, 11, -1]])
    np.testing.assert_array_equal(out[0], expected)


def test_patch_start_keeps_the_centre_inside():
    rng = np.random.default_rng(0)
    for center in range(30):
        start = patch_start(30, 8, rng, center)
        assert 0 <= start <= 22 and start <= center < start + 8
    assert patch_start(5, 8, rng, 2) in range(-3, 1)
    starts = {patch_start(10, 8, rng, None) for _ in range(200)}
    assert starts == {0, 1, 2}


def test_batches_have_the_right_shapes_and_types():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (16, 24), batch_size=4, seed=0)
    image, mask = next(iter(sampler))
    assert image.shape == (4, 2, 16, 24) and image.dtype == torch.float32
    assert mask.shape == (4, 16, 24) and mask.dtype == torch.int64


def test_foreground_fraction_centres_on_rare_classes():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), batch_size=4, foreground_fraction=0.5, seed=1,
                           batches_per_epoch=50)
    forced_hits, random_hits = 0, 0
    for _, mask in sampler:
        present = [(m > 0).any().item() for m in mask]
        assert all(present[2:])  # the last round(4 * 0.5) patches are centred on foreground
        forced_hits += sum(present[2:])
        random_hits += sum(present[:2])
    assert forced_hits == 100 and random_hits < 60
    centred = [mask[2:] for _, (_, mask) in zip(range(20), sampler, strict=False)]
    classes = [set(m.unique().tolist()) for masks in centred for m in masks]
    assert any(1 in c for c in classes) and any(2 in c for c in classes)


def test_small_images_are_padded():
    image = np.ones((1, 5, 6), np.float32)
    mask = np.ones((5, 6), np.int64)
    sampler = PatchSampler([image], [mask], (8, 8), batch_size=2, seed=0, pad_value=-1.0)
    batch_image, batch_mask = next(iter(sampler))
    assert (batch_image == 1).sum().item() == 2 * 30 and (batch_image == -1).sum().item() == 68
    assert batch_mask.sum().item() == 60


def test_same_seed_epoch_rank_same_batches():
    images, masks = _cases()

    def epoch(seed, epoch_index, rank=0):
        sampler = PatchSampler(images, masks, (8, 8), 3, seed=seed, rank=rank, world_size=2,
                               batches_per_epoch=4)
        sampler.set_epoch(epoch_index)
        return torch.cat([b[0] for b in sampler])

    assert torch.equal(epoch(0, 1), epoch(0, 1))
    assert not torch.equal(epoch(0, 1), epoch(0, 2))
    assert not torch.equal(epoch(0, 1), epoch(1, 1))
    assert not torch.equal(epoch(0, 1, rank=0), epoch(0, 1, rank=1))


def test_state_dict_resume():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), 2, seed=3, batches_per_epoch=3)
    sampler.set_epoch(5)
    expected = [b[0] for b in sampler]
    resumed = PatchSampler(images, masks, (8, 8), 2, seed=0, batches_per_epoch=3)
    resumed.load_state_dict(sampler.state_dict())
    assert all(torch.equal(a, b[0]) for a, b in zip(expected, resumed, strict=True))


def test_dataloader_with_workers_is_reproducible():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), 2, seed=0, batches_per_epoch=5)
    first = [b[0] for b in epoch_batches(sampler, 2, num_workers=2)]
    second = [b[0] for b in epoch_batches(sampler, 2, num_workers=2)]
    assert len(first) == 5 and len(sampler) == 5
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])  # the two workers draw different streams


def test_3d_sampling():
    images, masks = _cases(2, (10, 12, 9))
    sampler = PatchSampler(images, masks, (8, 8, 8), 2, seed=0)
    image, mask = next(iter(sampler))
    assert image.shape == (2, 2, 8, 8, 8) and mask.shape == (2, 8, 8, 8)


def test_invalid_arguments_are_named():
    images, masks = _cases()
    with pytest.raises(ValueError, match="masks"):
        PatchSampler(images, masks[:1], (8, 8), 2)
    with pytest.raises(ValueError, match="patch_size"):
        PatchSampler(images, masks, (8, 8, 8), 2)
    with pytest.raises(ValueError, match="rank"):
        PatchSampler(images, masks, (8, 8), 2, rank=2, world_size=2)
