"""The ignore label of sparse annotations in the data layer: detection (nnU-Net's dataset.json
``ignore``, ``data.ignore_label``), the doctor's labelled fraction, patch centres, and what
augmentation shows outside a patch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.train.sparse import write_sparse
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import AugmentConfig
from unetkit.data.augment import Augmenter
from unetkit.data.dataset import DatasetError, read_dataset_json
from unetkit.data.doctor import check_dataset
from unetkit.data.ignore import IGNORE, ignore_value, labelled_fraction
from unetkit.data.sampling import PatchSampler

runner = CliRunner()


def test_the_ignore_label_of_an_nnunet_dataset_json_is_detected(tmp_path):
    root, _, _ = write_sparse(tmp_path / "d", n_cases=2, ignore=2)
    labels, _ = read_dataset_json(root)
    assert labels == {0: "background", 1: "disk", 2: "ignore"}
    assert ignore_value(None, labels) == 2
    assert ignore_value(None, {0: "background", 1: "disk"}) is None
    assert ignore_value(7, {0: "background", 1: "disk"}) == 7  # data.ignore_label wins


def test_an_ignore_label_against_the_convention_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="'ignore' .1. must have the highest value"):
        ignore_value(None, {0: "background", 1: "ignore", 2: "tumour"})
    with pytest.raises(DatasetError, match="data.ignore_label 1: that value is the class 'disk'"):
        ignore_value(1, {0: "background", 1: "disk"})


def test_the_doctor_reports_the_labelled_fraction_per_case(tmp_path):
    root, dense, ignored = write_sparse(tmp_path / "d", n_cases=3, ignore=2)
    report = check_dataset(root)
    assert report.ok, report.errors
    expected = {f"c{i}": 1 - ignored[i].mean() for i in range(3)}
    assert report.summary["labelled"] == pytest.approx(expected)
    assert report.summary["ignore_label"] == 2
    # class frequencies are of the labelled pixels: the ignore value is no class
    assert set(report.summary["class_frequencies"]) == {0, 1}
    labelled_fg = sum(int((d[~g] == 1).sum()) for d, g in zip(dense, ignored, strict=True))
    labelled = sum(int((~g).sum()) for g in ignored)
    share = report.summary["class_frequencies"][1]["voxel_fraction"]
    assert share == pytest.approx(labelled_fg / labelled)


def test_check_prints_the_labelled_fraction(tmp_path):
    root, _, ignored = write_sparse(tmp_path / "d", n_cases=2, ignore=5, nnunet=False)
    plain = runner.invoke(app, ["check", str(root)])
    assert "labelled c0" not in plain.output  # 5 is a class without --ignore-label
    result = runner.invoke(app, ["check", str(root), "--ignore-label", "5"])
    assert result.exit_code == 0, result.output
    for i in range(2):
        assert f"labelled c{i}" in result.output
        assert f"{100 * (1 - ignored[i].mean()):.2f}% of pixels" in result.output


def test_a_fully_ignored_case_is_warned_about(tmp_path):
    root, _, _ = write_sparse(tmp_path / "d", n_cases=2, ignore=2)
    from PIL import Image

    Image.fromarray(np.full((32, 32), 2, np.uint8)).save(root / "labelsTr" / "c1.png")
    report = check_dataset(root)
    assert report.summary["labelled"]["c1"] == 0.0
    assert any("c1.png: every pixel is ignored" in w for w in report.warnings)
    assert labelled_fraction({0: 3, 2: 1}, 2) == 0.75


def sparse_case(size: int = 64) -> np.ndarray:
    """A mask that is ignored except two short strokes: background and foreground."""
    mask = np.full((size, size), IGNORE, np.int64)
    mask[50, 3:9] = 0
    mask[10:14, 40] = 1
    return mask


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_patches_are_never_only_ignored_and_never_centred_on_ignored_pixels(fraction):
    mask = sparse_case()
    image = np.random.default_rng(0).normal(size=(1, 64, 64)).astype(np.float32)
    sampler = PatchSampler([image], [mask], (16, 16), 8, fraction, seed=0,
                           ignore_index=IGNORE)
    assert set(sampler.locations[0]) == {1}  # foreground centres: labelled foreground only
    assert all(mask[tuple(c)] == 1 for c in sampler.locations[0][1])
    assert all(mask[tuple(c)] != IGNORE for c in sampler.labelled[0])
    rng = np.random.default_rng(1)
    for _ in range(20):
        _, masks = sampler.sample_batch(rng)
        for patch in masks:
            assert (patch != IGNORE).any()  # every patch holds a labelled pixel
            if fraction == 1.0:
                assert (patch == 1).any()  # forced patches hold the labelled foreground
    # the same sampler without an ignore label draws patches that hold nothing labelled
    plain = PatchSampler([image], [mask], (16, 16), 8, 0.0, seed=0)
    only_ignored = [bool((p == IGNORE).all()) for _ in range(5)
                    for p in plain.sample_batch(rng)[1]]
    assert any(only_ignored)


def test_a_case_without_ignored_pixels_draws_as_before():
    mask = np.zeros((40, 40), np.int64)
    mask[5:9, 5:9] = 1
    image = np.ones((1, 40, 40), np.float32)
    with_ignore = PatchSampler([image], [mask], (16, 16), 4, 0.5, seed=3, ignore_index=IGNORE)
    without = PatchSampler([image], [mask], (16, 16), 4, 0.5, seed=3)
    assert with_ignore.labelled == [None]
    for a, b in zip(with_ignore.sample_batch(np.random.default_rng(0)),
                    without.sample_batch(np.random.default_rng(0)), strict=True):
        assert torch.equal(a, b)


def test_padding_of_small_images_is_ignored_not_background():
    mask = np.zeros((8, 8), np.int64)
    sampler = PatchSampler([np.ones((1, 8, 8), np.float32)], [mask], (16, 16), 2, 0.0,
                           ignore_index=IGNORE)
    _, masks = sampler.sample_batch(np.random.default_rng(0))
    assert (masks == IGNORE).sum() == 2 * (256 - 64) and (masks == 0).sum() == 2 * 64


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_augmentation_shows_the_ignore_label_outside_the_patch(interpolation):
    config = AugmentConfig(flip_prob=0, rot90_prob=0, affine_prob=1, rotation_degrees=45,
                           scale_range=(0.7, 0.7), elastic_prob=0, noise_prob=0, blur_prob=0,
                           brightness_contrast_prob=0, lowres_prob=0, gamma_prob=0,
                           mask_interpolation=interpolation)
    image = torch.ones(2, 1, 32, 32)
    mask = torch.ones(2, 32, 32, dtype=torch.int64)
    seen, filled = Augmenter(config, 2, mask_fill=IGNORE)(image, mask,
                                                          torch.Generator().manual_seed(0))
    _, plain = Augmenter(config, 2)(image, mask, torch.Generator().manual_seed(0))
    assert set(torch.unique(filled).tolist()) == {1, IGNORE}  # zoomed out: corners outside
    if interpolation == "nearest":  # exactly where background showed before
        assert torch.equal(filled == IGNORE, plain == 0)
        assert json.dumps(sorted(torch.unique(plain).tolist())) == "[0, 1]"
    else:  # where the (all-ones) image shows nothing but zero padding
        assert torch.equal(filled == IGNORE, seen[:, 0] == 0)


def test_cases_without_a_labelled_pixel_are_not_drawn():
    labelled = sparse_case(64)
    unlabelled = np.full((64, 64), IGNORE, np.int64)  # an unannotated slice
    images = [np.zeros((1, 64, 64), np.float32), np.ones((1, 64, 64), np.float32)] * 2
    sampler = PatchSampler(images, [labelled, unlabelled] * 2, (8, 8), 4, 0.0,
                           ignore_index=IGNORE)
    assert sampler.cases == [0, 2]
    for seed in range(5):
        batch, masks = sampler.sample_batch(np.random.default_rng(seed))
        assert (batch == 0).all() and all((m != IGNORE).any() for m in masks)


def test_sparse_sampling_keeps_batches_a_function_of_the_batch_in_workers():
    """Re-centring, skipped cases and augmentation with the ignore fill all draw from batch
    i's own generator: two workers, or a start in mid-epoch, give the same batches."""
    from unetkit.train.batches import BatchStream

    config = AugmentConfig(affine_prob=1.0, rotation_degrees=30, elastic_prob=0.0)
    images = [np.random.default_rng(i).normal(size=(1, 64, 64)).astype(np.float32)
              for i in range(3)]
    masks = [sparse_case(64), np.full((64, 64), IGNORE, np.int64), sparse_case(64)]
    sampler = PatchSampler(images, masks, (16, 16), 4, 0.5, seed=7, batches_per_epoch=4,
                           ignore_index=IGNORE, augment=Augmenter(config, 2, mask_fill=IGNORE))
    assert sampler.cases == [0, 2]

    def epoch(start=0, workers=0):
        stream = BatchStream(sampler, 1, start, workers)
        batches = list(stream.take(4 - start))
        stream.close()
        return batches

    alone = epoch()
    for other in (epoch(workers=2), epoch(start=2)):
        for (image, mask), (ref_image, ref_mask) in zip(other, alone[4 - len(other):],
                                                        strict=True):
            assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)
    assert not torch.equal(alone[0][1], alone[1][1])
