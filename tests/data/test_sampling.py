"""Patch sampling: sizes, padding, foreground oversampling, seeding, workers and ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.sampling import PatchSampler, extract_patch, patch_start
from unetkit.train.batches import BatchStream


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


def _epoch(sampler, epoch, start=0, workers=0):
    stream = BatchStream(sampler, epoch, start, workers)
    batches = list(stream.take(len(sampler) - start))
    stream.close()
    return batches


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
                                    for x, y in zip(a, b, strict=True))


def test_workers_draw_the_same_batches_as_the_training_process():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), 2, seed=0, batches_per_epoch=5)
    alone = _epoch(sampler, 2)
    assert _same(_epoch(sampler, 2, workers=2), alone)
    assert len(alone) == 5 and len(sampler) == 5
    assert not torch.equal(alone[0][0], alone[1][0])


def test_a_resumed_epoch_starts_at_its_batch_without_drawing_the_others():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), 2, seed=0, batches_per_epoch=5)
    whole = _epoch(sampler, 1)
    assert _same(_epoch(sampler, 1, start=3), whole[3:])
    assert _same(_epoch(sampler, 1, start=3, workers=2), whole[3:])
    with pytest.raises(ValueError, match="start batch 6"):
        sampler.set_epoch(1, 6)


def test_one_stream_runs_on_into_the_next_epochs():
    images, masks = _cases()
    sampler = PatchSampler(images, masks, (8, 8), 2, seed=0, batches_per_epoch=3)
    expected = _epoch(sampler, 0)[2:] + _epoch(sampler, 1) + _epoch(sampler, 2)[:1]
    for workers in (0, 2):
        stream = BatchStream(sampler, 0, 2, workers)
        assert _same(list(stream.take(5)), expected) and stream.position == (2, 1)
        stream.close()


def test_augmentation_where_batches_are_drawn_is_seeded_by_the_batch():
    from unetkit.config import AugmentConfig
    from unetkit.data.augment import Augmenter

    images, masks = _cases()
    config = AugmentConfig(affine_prob=1.0, noise_prob=1.0, elastic_prob=0.0)
    plain = PatchSampler(images, masks, (16, 16), 2, seed=4, batches_per_epoch=4)
    augmented = PatchSampler(images, masks, (16, 16), 2, seed=4, batches_per_epoch=4,
                             augment=Augmenter(config, 2))
    raw, alone = _epoch(plain, 0), _epoch(augmented, 0)
    assert _same(_epoch(augmented, 0, workers=2), alone)
    assert _same(_epoch(augmented, 0, start=2), alone[2:])
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(raw, alone, strict=True))
    assert alone[0][0].shape == raw[0][0].shape and alone[0][1].dtype == torch.int64


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
