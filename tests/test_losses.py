"""Losses: hand-computed values, agreement with torch/MONAI, and the properties they promise."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unetkit.config import LossConfig
from unetkit.losses import (
    CompoundLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    bce_with_logits_loss,
    build_loss,
    cross_entropy_loss,
    default_deep_supervision_weights,
    downsample_target,
    focal_loss,
    soft_dice_loss,
    soft_jaccard_loss,
    tversky_loss,
)
from unetkit.losses.fused import compact_labels

ALL_NAMES = ["dice_ce", "ce", "dice", "jaccard", "focal", "tversky"]
BINARY_NAMES = [*ALL_NAMES, "bce", "dice_bce"]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _binary_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities [0.9, 0.5, 0.3, 0.1] on a 2x2 image, target [1, 1, 0, 0]."""
    probs = [0.9, 0.5, 0.3, 0.1]
    logits = torch.tensor([_logit(p) for p in probs], dtype=torch.float64).view(1, 1, 2, 2)
    target = torch.tensor([1, 1, 0, 0]).view(1, 2, 2)
    return logits.float(), target


# ---------------------------------------------------------------- hand-computed values


def test_binary_region_losses_by_hand():
    logits, target = _binary_example()
    # tp = 0.9 + 0.5 = 1.4, sum p = 1.8, sum g = 2, fp = 0.4, fn = 0.6
    dice = soft_dice_loss(logits, target, smooth=0.0)
    assert dice.item() == pytest.approx(1 - 2.8 / 3.8, abs=1e-6)
    squared = soft_dice_loss(logits, target, smooth=0.0, squared_denominator=True)
    assert squared.item() == pytest.approx(1 - 2.8 / (0.81 + 0.25 + 0.09 + 0.01 + 2), abs=1e-6)
    jaccard = soft_jaccard_loss(logits, target, smooth=0.0)
    assert jaccard.item() == pytest.approx(1 - 1.4 / (3.8 - 1.4), abs=1e-6)
    tversky = tversky_loss(logits, target, alpha=0.3, beta=0.7, smooth=0.0)
    assert tversky.item() == pytest.approx(1 - 1.4 / (1.4 + 0.3 * 0.4 + 0.7 * 0.6), abs=1e-6)
    smoothed = soft_dice_loss(logits, target, smooth=1.0)
    assert smoothed.item() == pytest.approx(1 - 3.8 / 4.8, abs=1e-6)


def test_binary_ce_and_focal_by_hand():
    logits, target = _binary_example()
    p_t = [0.9, 0.5, 0.7, 0.9]
    bce = -sum(math.log(p) for p in p_t) / 4
    assert bce_with_logits_loss(logits, target).item() == pytest.approx(bce, abs=1e-6)
    focal = -sum((1 - p) ** 2 * math.log(p) for p in p_t) / 4
    assert focal_loss(logits, target, gamma=2.0).item() == pytest.approx(focal, abs=1e-6)
    # class weights [bg, fg] = [1, 3]: weighted mean over pixels
    weighted = -(3 * math.log(0.9) + 3 * math.log(0.5) + math.log(0.7) + math.log(0.9)) / 8
    value = bce_with_logits_loss(logits, target, class_weights=[1.0, 3.0]).item()
    assert value == pytest.approx(weighted, abs=1e-6)


def test_multiclass_ce_dice_by_hand():
    # two pixels, three classes, softmax probabilities chosen exactly
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    logits = probs.log().T.reshape(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])
    ce = cross_entropy_loss(logits, target)
    assert ce.item() == pytest.approx(-(math.log(0.7) + math.log(0.6)) / 2, abs=1e-6)
    weighted = cross_entropy_loss(logits, target, class_weights=[1.0, 3.0, 1.0])
    expected = -(math.log(0.7) + 3 * math.log(0.6)) / 4
    assert weighted.item() == pytest.approx(expected, abs=1e-6)
    # foreground classes 1 and 2: class 1 tp .6, sum p .8, sum g 1; class 2 tp 0, p .4, g 0
    dice = soft_dice_loss(logits, target, smooth=0.0, include_background=False)
    assert dice.item() == pytest.approx(1 - (1.2 / 1.8 + 0.0) / 2, abs=1e-6)
    with_bg = soft_dice_loss(logits, target, smooth=0.0, include_background=True)
    assert with_bg.item() == pytest.approx(1 - (1.4 / 1.8 + 1.2 / 1.8 + 0.0) / 3, abs=1e-6)


def test_per_sample_versus_batch_dice_by_hand():
    # sample A: p [.8, .2], g [1, 0]; sample B: p [.2, .2], g [0, 0] (empty target)
    probs = torch.tensor([[0.8, 0.2], [0.2, 0.2]])
    logits = torch.logit(probs).view(2, 1, 1, 2)
    target = torch.tensor([[1, 0], [0, 0]]).view(2, 1, 2)
    per_sample = soft_dice_loss(logits, target, smooth=1.0, batch_dice=False)
    assert per_sample.item() == pytest.approx(1 - (2.6 / 3 + 1 / 1.4) / 2, abs=1e-6)
    batch = soft_dice_loss(logits, target, smooth=1.0, batch_dice=True)
    assert batch.item() == pytest.approx(1 - 2.6 / 3.4, abs=1e-6)
    # batch Dice is the Dice of the samples laid side by side as one image
    joined = soft_dice_loss(logits.permute(1, 2, 0, 3).reshape(1, 1, 1, 4),
                            target.permute(1, 0, 2).reshape(1, 1, 4), smooth=1.0)
    assert batch.item() == pytest.approx(joined.item(), abs=1e-6)
    # with one sample the two reductions coincide
    one = [soft_dice_loss(logits[:1], target[:1], smooth=1.0, batch_dice=b) for b in (0, 1)]
    assert one[0].item() == pytest.approx(one[1].item(), abs=1e-7)


# ---------------------------------------------------------------- independent references


@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)])
def test_cross_entropy_matches_torch(spatial):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, *spatial, generator=gen)
    labels = torch.randint(0, 4, (2, *spatial), generator=gen)
    labels[0, 0] = 255
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0])
    ours = cross_entropy_loss(logits, labels, class_weights=weights, ignore_index=255)
    ref = F.cross_entropy(logits, labels, weight=weights, ignore_index=255)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    soft = torch.softmax(torch.randn(2, 4, *spatial, generator=gen), 1)
    ours = cross_entropy_loss(logits, soft, class_weights=weights)
    assert ours.item() == pytest.approx(F.cross_entropy(logits, soft, weight=weights).item(),
                                        rel=1e-5)
    assert focal_loss(logits, labels, gamma=0.0, class_weights=weights,
                      ignore_index=255).item() == pytest.approx(ref.item(), rel=1e-5)


def test_bce_matches_torch():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 4, 5, 3, generator=gen)
    soft = torch.rand(2, 1, 4, 5, 3, generator=gen)
    ref = F.binary_cross_entropy_with_logits(logits, soft)
    assert bce_with_logits_loss(logits, soft).item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("spatial", [(6, 5), (4, 3, 5)])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch_dice", [True, False])
@pytest.mark.parametrize("squared", [True, False])
def test_dice_matches_monai(spatial, include_background, batch_dice, squared):
    monai_losses = pytest.importorskip("monai.losses")
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 3, *spatial, generator=gen)
    labels = torch.randint(0, 3, (3, 1, *spatial), generator=gen)
    ours = soft_dice_loss(logits, labels, smooth=1e-5, batch_dice=batch_dice,
                          include_background=include_background, squared_denominator=squared)
    ref = monai_losses.DiceLoss(include_background=include_background, to_onehot_y=True,
                                softmax=True, squared_pred=squared, batch=batch_dice,
                                smooth_nr=1e-5, smooth_dr=1e-5)(logits, labels)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


def test_tversky_and_jaccard_match_monai():
    monai_losses = pytest.importorskip("monai.losses")
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 7, 6, generator=gen)
    target = torch.randint(0, 2, (2, 1, 7, 6), generator=gen)
    ours = tversky_loss(logits, target, alpha=0.3, beta=0.7, smooth=1e-5)
    ref = monai_losses.TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, smooth_nr=1e-5,
                                   smooth_dr=1e-5)(logits, target)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
    ours = soft_jaccard_loss(logits, target, smooth=0.0)
    ref = monai_losses.DiceLoss(sigmoid=True, jaccard=True, smooth_nr=0.0, smooth_dr=1e-12)
    assert ours.item() == pytest.approx(ref(logits, target).item(), abs=1e-5)
    # alpha = beta = 1/2 is the Dice loss
    half = tversky_loss(logits, target, alpha=0.5, beta=0.5, smooth=0.0)
    assert half.item() == pytest.approx(soft_dice_loss(logits, target, smooth=0.0).item(),
                                        abs=1e-6)


# ---------------------------------------------------------------- properties


def _perfect_logits(onehot: torch.Tensor) -> torch.Tensor:
    return 30.0 * (2 * onehot - 1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("spatial", [(6, 7), (4, 5, 3)])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_perfect_prediction_is_minimum(name, spatial, channels):
    gen = torch.Generator().manual_seed(4)
    labels = torch.randint(0, max(channels, 2), (2, *spatial), generator=gen)
    onehot = (labels.unsqueeze(1).float() if channels == 1
              else F.one_hot(labels, channels).movedim(-1, 1).float())
    loss = build_loss(LossConfig(name=name, include_background=True), channels)
    best = loss(_perfect_logits(onehot), labels).item()
    assert best == pytest.approx(0.0, abs=1e-4)
    for _ in range(3):
        other = loss(torch.randn(2, channels, *spatial, generator=gen), labels).item()
        assert other > best


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("batch_dice", [True, False])
def test_gradients_finite_on_empty_targets(name, channels, batch_dice):
    logits = torch.randn(2, channels, 5, 4, requires_grad=True)
    empty = torch.zeros(2, 5, 4, dtype=torch.long)
    loss = build_loss(LossConfig(name=name, batch_dice=batch_dice), channels)(logits, empty)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # an empty target with an empty prediction is perfect for the region losses
    silent = torch.full((2, channels, 5, 4), -30.0)
    if channels > 1:
        silent[:, 0] = 30.0
    assert build_loss(LossConfig(name="dice", batch_dice=batch_dice),
                      channels)(silent, empty).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "channels"), [(n, 1) for n in BINARY_NAMES] + [(n, 3) for n in ALL_NAMES]
)
def test_ignored_pixels_change_neither_loss_nor_gradient(name, channels):
    gen = torch.Generator().manual_seed(5)
    labels = torch.randint(0, max(channels, 2), (2, 6, 5), generator=gen)
    ignored = torch.rand(2, 6, 5, generator=gen) < 0.3
    labels[ignored] = 255
    loss = build_loss(LossConfig(name=name, ignore_index=255, class_weights=None), channels)
    base = torch.randn(2, channels, 6, 5, generator=gen)

    def run(logit_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logit_values.clone().requires_grad_(True)
        value = loss(logits, labels)
        value.backward()
        return value.detach(), logits.grad

    value_a, grad_a = run(base)
    changed = base.clone()
    changed[ignored.unsqueeze(1).expand_as(changed)] = 17.0
    value_b, grad_b = run(changed)
    assert value_a.item() == pytest.approx(value_b.item(), abs=1e-6)
    assert torch.allclose(grad_a, grad_b, atol=1e-7)
    assert grad_a[ignored.unsqueeze(1).expand_as(grad_a)].abs().max() == 0


def test_target_forms_agree():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 4, 4, 4, generator=gen)
    labels = torch.randint(0, 3, (2, 4, 4, 4), generator=gen)
    onehot = F.one_hot(labels, 3).movedim(-1, 1).float()
    loss = build_loss(LossConfig(name="dice_ce", include_background=True), 3)
    values = [loss(logits, t).item() for t in (labels, labels.unsqueeze(1), onehot)]
    assert values == pytest.approx([values[0]] * 3, rel=1e-6)


def test_bf16_autocast_computes_in_float32():
    logits = torch.randn(2, 3, 8, 8).bfloat16()
    labels = torch.randint(0, 3, (2, 8, 8))
    loss = build_loss(LossConfig(), 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(logits, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(logits.float(), labels).item(), rel=1e-6)


def test_compound_is_weighted_sum():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 1, 5, 5, generator=gen)
    labels = torch.randint(0, 2, (2, 5, 5), generator=gen)
    loss = build_loss(LossConfig(name="dice_bce", dice_weight=0.25, ce_weight=2.0,
                                 batch_dice=False), 1)
    expected = 0.25 * soft_dice_loss(logits, labels, include_background=False) + 2.0 * (
        bce_with_logits_loss(logits, labels))
    assert loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert isinstance(loss, CompoundLoss)


def test_build_loss_rejects_bad_combinations():
    with pytest.raises(ValueError, match="binary"):
        build_loss(LossConfig(name="bce"), 3)
    with pytest.raises(ValueError, match="class_weights needs 3"):
        build_loss(LossConfig(name="ce", class_weights=[1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="class_weights needs 2"):
        build_loss(LossConfig(name="ce", class_weights=[1.0]), 1)
    with pytest.raises(ValueError, match="target labels must lie in"):
        build_loss(LossConfig(name="ce"), 3)(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="does not match logits"):
        DiceLoss()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2))


# ---------------------------------------------------------------- deep supervision


def test_deep_supervision_default_weights_and_sum():
    assert default_deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    gen = torch.Generator().manual_seed(8)
    labels = torch.randint(0, 3, (2, 8, 8), generator=gen)
    outputs = [torch.randn(2, 3, s, s, generator=gen) for s in (8, 4, 2)]
    inner = build_loss(LossConfig(), 3)
    value = DeepSupervisionLoss(inner)(outputs, labels)
    # nearest: the coarse pixel i takes the fine pixel 2i (top-left of its 2x2 cell)
    expected = sum(w * inner(o, labels[:, ::f, ::f]) for w, o, f in
                   zip([4 / 7, 2 / 7, 1 / 7], outputs, (1, 2, 4), strict=True))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert DeepSupervisionLoss(inner)(outputs[0], labels).item() == pytest.approx(
        inner(outputs[0], labels).item())
    with pytest.raises(ValueError, match="2 weights but got 3"):
        DeepSupervisionLoss(inner, weights=[1.0, 0.5])(outputs, labels)


def test_maxpool_targets_keep_thin_structures():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, 1, 1, 1] = 2  # one voxel, missed by nearest sampling at 1/2
    nearest = downsample_target(labels, (2, 2, 2), 3, "nearest")
    assert nearest.dtype == labels.dtype and (nearest == 2).sum() == 0
    pooled = downsample_target(labels, (2, 2, 2), 3, "maxpool")
    assert pooled.shape == (1, 3, 2, 2, 2)
    assert pooled[0, 2, 0, 0, 0] == 1 and pooled[0, 2].sum() == 1
    assert pooled[0, 0].sum() == 8  # background present in every window
    binary = downsample_target(torch.eye(4, dtype=torch.long)[None], (2, 2), 1, "maxpool")
    assert binary.tolist() == [[[[1.0, 0.0], [0.0, 1.0]]]]
    loss = DeepSupervisionLoss(build_loss(LossConfig(), 3), target_mode="maxpool")
    value = loss([torch.randn(1, 3, 4, 4, 4), torch.randn(1, 3, 2, 2, 2)], labels)
    assert torch.isfinite(value)
    with pytest.raises(ValueError, match="cannot carry an ignore label"):
        downsample_target(torch.full((1, 4, 4), 255), (2, 2), 3, "maxpool")


# ---------------------------------------------------------------- fused Dice + CE


FUSED_CASES = [
    # (channels, spatial, batch_dice, include_background, squared, ignore, class weights,
    #  dice_weight, ce_weight)
    (3, (5, 6), True, False, False, None, None, 1.0, 1.0),
    (3, (4, 5, 3), False, True, True, 255, [0.2, 1.0, 3.0], 0.3, 2.0),
    (3, (5, 6), False, False, False, 255, None, 1.0, 0.0),
    (4, (4, 3, 5), True, True, False, None, [1.0, 2.0, 0.5, 1.0], 0.0, 1.0),
    (1, (5, 6), True, False, False, None, None, 1.0, 1.0),
    (1, (4, 5, 3), False, True, True, 255, [0.5, 2.0], 0.25, 2.0),
    (1, (6, 5), True, False, False, 255, None, 0.0, 1.0),
]


@pytest.mark.parametrize(("channels", "spatial", "batch_dice", "include_background", "squared",
                          "ignore", "weights", "dice_weight", "ce_weight"), FUSED_CASES)
def test_fused_dice_ce_has_the_compound_value_and_gradient(channels, spatial, batch_dice,
                                                           include_background, squared, ignore,
                                                           weights, dice_weight, ce_weight):
    gen = torch.Generator().manual_seed(11)
    labels = torch.randint(0, max(channels, 2), (2, *spatial), generator=gen)
    if ignore is not None:
        labels[torch.rand(labels.shape, generator=gen) < 0.3] = ignore
    config = LossConfig(name="dice_ce", batch_dice=batch_dice,
                        include_background=include_background, squared_denominator=squared,
                        ignore_index=ignore, class_weights=weights, dice_weight=dice_weight,
                        ce_weight=ce_weight)
    fused = build_loss(config, channels)
    compound = CompoundLoss(list(zip(fused.weights, fused.losses, strict=True)))
    base = torch.randn(2, channels, *spatial, generator=gen, dtype=torch.float64)
    results = []
    for loss in (fused, compound):
        logits = base.clone().requires_grad_()
        value = loss(logits, labels)
        value.backward()
        results.append((value.item(), logits.grad))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5, abs=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-7)


def _kept_storages(run):
    kept = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = (storage.nbytes(), tensor.dtype)
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = run()
    return value, sorted(kept.values(), key=lambda item: -item[0])


def test_fused_loss_keeps_only_the_logits_and_one_byte_labels():
    # The compound loss kept float32 probabilities, log-probabilities, two one-hot maps and a
    # weight map (about 16 C + 4 bytes a voxel); the fused one keeps 2 C + 1 under bf16.
    logits = torch.randn(2, 3, 6, 7, 5).bfloat16().requires_grad_()
    labels = torch.randint(0, 3, (2, 6, 7, 5))
    loss = build_loss(LossConfig(ignore_index=255), 3)
    value, kept = _kept_storages(lambda: loss(logits, labels))
    assert kept == [(logits.numel() * 2, torch.bfloat16), (labels.numel(), torch.uint8)]
    value.backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()


def test_compact_labels_are_the_smallest_type_that_holds_every_value():
    labels = torch.zeros(2, 3, dtype=torch.long)
    assert compact_labels(labels, 3, None).dtype == torch.uint8
    assert compact_labels(labels, 3, 255).dtype == torch.uint8
    assert compact_labels(labels, 3, -1).dtype == torch.int16
    assert compact_labels(labels, 300, None).dtype == torch.int16
    assert compact_labels(labels, 3, 70000).dtype == torch.int32
    assert compact_labels(torch.tensor([[0, 255]]), 3, 255).tolist() == [[0, 255]]


def test_fused_loss_checks_labels_once_and_takes_one_hot_targets_the_compound_way():
    loss = build_loss(LossConfig(), 3)
    assert isinstance(loss, DiceCELoss) and isinstance(loss, CompoundLoss)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\].*got values in \[0, 5\]"):
        loss(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 5], [1, 2]]]))
    with pytest.raises(ValueError, match="ignore_index=255"):
        build_loss(LossConfig(ignore_index=255), 3)(torch.zeros(1, 3, 2, 2),
                                                     torch.tensor([[[0, 7], [255, 2]]]))
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 3, 5, 5, generator=gen)
    soft = torch.softmax(torch.randn(2, 3, 5, 5, generator=gen), 1)
    expected = CompoundLoss(list(zip(loss.weights, loss.losses, strict=True)))(logits, soft)
    assert loss(logits, soft).item() == pytest.approx(expected.item(), rel=1e-6)
