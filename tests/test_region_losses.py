"""Region losses: region targets from label maps, BCE + soft Dice per region against hand
computations, ignored pixels, the loss names that have a region form."""

from __future__ import annotations

import math

import pytest
import torch

from unetkit.config import Config, LossConfig, apply_overrides
from unetkit.losses import DeepSupervisionLoss
from unetkit.losses.regions import (
    RegionLoss,
    build_region_loss,
    region_bce_loss,
    region_dice_loss,
    region_targets,
)
from unetkit.train.builders import build_loss_fn

BRATS = [[1, 2, 3], [2, 3], [3]]
LABELS = torch.tensor([[[0, 1, 2], [3, 3, 1]]])  # (B=1, 2, 3)


def test_region_targets_equal_hand_computed_binary_maps() -> None:
    logits = torch.zeros(1, 3, 2, 3)
    target = region_targets(logits, LABELS, BRATS)
    whole = [[0, 1, 1], [1, 1, 1]]
    core = [[0, 0, 1], [1, 1, 0]]
    enhancing = [[0, 0, 0], [1, 1, 0]]
    assert target.onehot.tolist() == [[whole, core, enhancing]]
    assert target.valid is None
    # (B, 1, *S) label maps read the same; float region maps are taken as they are
    assert torch.equal(region_targets(logits, LABELS[:, None], BRATS).onehot, target.onehot)
    maps = torch.rand(1, 3, 2, 3)
    assert torch.equal(region_targets(logits, maps, BRATS).onehot, maps)


def test_ignored_pixels_are_in_no_region_and_weigh_nothing() -> None:
    labels = torch.tensor([[[0, 1, 9], [3, 9, 1]]])
    target = region_targets(torch.zeros(1, 3, 2, 3), labels, BRATS, ignore_index=9)
    assert target.valid[0, 0].tolist() == [[1, 1, 0], [1, 0, 1]]
    assert target.onehot[:, :, 0, 2].sum() == 0 and target.onehot[:, :, 1, 1].sum() == 0
    # whatever the network says on ignored pixels, the losses do not move
    logits = torch.randn(1, 3, 2, 3)
    changed = logits.clone()
    changed[:, :, 0, 2], changed[:, :, 1, 1] = 50.0, -50.0
    loss = RegionLoss(BRATS, ignore_index=9)
    assert torch.allclose(loss(logits, labels), loss(changed, labels))


def _hand_bce(logit: float, truth: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(truth * math.log(p) + (1 - truth) * math.log(1 - p))


def test_bce_and_dice_per_region_equal_a_hand_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 3)
    truth = region_targets(logits, LABELS, BRATS).onehot
    values = [_hand_bce(float(logits.flatten()[i]), float(truth.flatten()[i]))
              for i in range(logits.numel())]
    bce = sum(values) / len(values)
    dices = []
    for r in range(3):  # soft Dice of region r over its 6 pixels
        p = [1 / (1 + math.exp(-float(v))) for v in logits[0, r].flatten()]
        g = [float(v) for v in truth[0, r].flatten()]
        tp = sum(a * b for a, b in zip(p, g, strict=True))
        dices.append((2 * tp + 1e-5) / (sum(p) + sum(g) + 1e-5))
    dice = 1 - sum(dices) / 3
    assert region_bce_loss(logits, LABELS, BRATS).item() == pytest.approx(bce, rel=1e-6)
    assert region_dice_loss(logits, LABELS, BRATS).item() == pytest.approx(dice, rel=1e-6)
    loss = build_region_loss(LossConfig(name="dice_ce", ce_weight=0.5, dice_weight=2.0), BRATS)
    assert loss(logits, LABELS).item() == pytest.approx(0.5 * bce + 2.0 * dice, rel=1e-6)
    default = build_region_loss(LossConfig(), BRATS)  # dice_ce, both weights 1
    assert default(logits, LABELS).item() == pytest.approx(bce + dice, rel=1e-6)


def test_batch_dice_sums_over_the_batch_first() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 4, (2, 4, 4))
    per_sample = [region_dice_loss(logits[i:i + 1], labels[i:i + 1], BRATS, batch_dice=True)
                  for i in range(2)]
    pooled = region_dice_loss(logits, labels, BRATS, batch_dice=True)
    separate = region_dice_loss(logits, labels, BRATS, batch_dice=False)
    assert separate.item() == pytest.approx(sum(v.item() for v in per_sample) / 2, rel=1e-6)
    assert pooled.item() != pytest.approx(separate.item(), rel=1e-4)


@pytest.mark.parametrize("name,bce,dice", [("dice_ce", 1, 1), ("dice_bce", 1, 1), ("ce", 1, 0),
                                           ("bce", 1, 0), ("dice", 0, 1)])
def test_loss_names_pick_the_terms(name: str, bce: int, dice: int) -> None:
    loss = build_region_loss(LossConfig(name=name), BRATS)
    assert (loss.bce_weight, loss.dice_weight) == (bce, dice)


def test_losses_without_a_region_form_and_class_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="train.loss.name='focal' has no region form"):
        build_region_loss(LossConfig(name="focal"), BRATS)
    with pytest.raises(ValueError, match="class_weights weigh classes"):
        build_region_loss(LossConfig(class_weights=[1.0, 2.0, 3.0]), BRATS)
    with pytest.raises(ValueError, match="for 3 regions got logits with 4 channels"):
        RegionLoss(BRATS)(torch.zeros(1, 4, 2, 3), LABELS)


def test_the_run_builds_the_region_loss_from_the_config_and_deep_supervision_wraps_it() -> None:
    regions = ["data.regions=[[1, 2, 3], [2, 3], [3]]", "data.regions_class_order=[1, 2, 3]",
               "model.out_channels=3"]
    config = apply_overrides(Config(), regions)
    assert isinstance(build_loss_fn(config), RegionLoss)
    deep = build_loss_fn(apply_overrides(config, ["model.deep_supervision=true"]))
    assert isinstance(deep, DeepSupervisionLoss) and isinstance(deep.loss, RegionLoss)
    logits = [torch.randn(1, 3, 8, 8), torch.randn(1, 3, 4, 4)]
    labels = torch.randint(0, 4, (1, 8, 8))
    small = labels[:, ::2, ::2]  # nearest down-sampling of the label map
    expected = (2 * deep.loss(logits[0], labels) + deep.loss(logits[1], small)) / 3
    assert deep(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    # without regions the loss is what it was (a softmax Dice + CE over 4 channels)
    plain = build_loss_fn(apply_overrides(Config(), ["model.out_channels=4"]))
    assert not isinstance(plain, RegionLoss)
