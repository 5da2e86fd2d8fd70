"""Soft skeletons and clDice against hand-computed values: a 1-voxel line is its own
skeleton, a thick bar thins to its centre, and a prediction that misses one of two thin
vessels loses a third of its clDice score (Tprec 1, Tsens 1/2)."""

from __future__ import annotations

import pytest
import torch

from unetkit.config import LossConfig
from unetkit.losses import build_loss
from unetkit.losses.skeleton import soft_cldice_loss, soft_skeleton


def two_lines(size: int = 32) -> torch.Tensor:
    """``(1, 1, size, size)``: two 1-pixel horizontal lines of 20 pixels."""
    x = torch.zeros(1, 1, size, size)
    x[0, 0, 8, 6:26] = 1.0
    x[0, 0, 20, 6:26] = 1.0
    return x


def test_a_one_voxel_line_is_its_own_skeleton():
    lines = two_lines()
    assert torch.equal(soft_skeleton(lines), lines)


@pytest.mark.parametrize("dims", [2, 3])
def test_a_thick_bar_thins_to_its_centre(dims):
    bar = torch.zeros(1, 1, *(33,) * dims)
    index = (0, 0, slice(13, 20), slice(4, 29)) + (slice(13, 20),) * (dims - 2)
    bar[index] = 1.0  # 7 voxels thick
    skeleton = soft_skeleton(bar, iterations=5)
    assert skeleton.min() >= 0 and skeleton.max() <= 1
    assert (skeleton * (1 - bar)).sum() == 0  # never outside the structure
    centre = (0, 0, 16, slice(8, 25)) + (16,) * (dims - 2)
    assert torch.all(skeleton[centre] == 1)  # the centre line, away from the ends
    assert skeleton.sum() < 0.25 * bar.sum()


def test_cldice_of_a_prediction_missing_one_vessel():
    truth = two_lines()
    found = truth.clone()
    found[0, 0, 20] = 0  # the second vessel is missed
    logits = (found * 2 - 1) * 30  # sigmoid: 1 on the found vessel, 0 elsewhere
    labels = truth[:, 0].long()
    # Tprec = 20 / 20 = 1, Tsens = 20 / 40 = 1/2: clDice = 2 * 0.5 / 1.5
    assert float(soft_cldice_loss(logits, labels)) == pytest.approx(1 - 2 / 3, abs=1e-4)
    perfect = (truth * 2 - 1) * 30
    assert float(soft_cldice_loss(perfect, labels)) == pytest.approx(0.0, abs=1e-4)


def test_ignored_pixels_count_in_neither_skeleton():
    truth = two_lines()
    found = truth.clone()
    found[0, 0, 20] = 0
    labels = truth[:, 0].long()
    labels[0, 18:23] = 255  # the missed vessel lies outside the region of interest
    logits = (found * 2 - 1) * 30
    assert float(soft_cldice_loss(logits, labels, ignore_index=255)) == pytest.approx(0.0,
                                                                                    abs=1e-4)


def test_build_loss_adds_bce_and_weighted_cldice():
    truth, logits = two_lines(), torch.randn(2, 1, 32, 32)
    labels = truth[:, 0].long().repeat(2, 1, 1)
    config = LossConfig(name="cldice_bce", cldice_weight=0.25, cldice_iterations=3)
    expected = (build_loss(LossConfig(name="bce"), 1)(logits, labels)
                + 0.25 * soft_cldice_loss(logits, labels, iterations=3))
    assert float(build_loss(config, 1)(logits, labels)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="binary models"):
        build_loss(config, 3)
    logits.requires_grad_(True)
    build_loss(config, 1)(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
