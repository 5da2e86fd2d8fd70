"""The decision without probabilities: the labels of the comparison (two classes, a sigmoid
output) and of the arg-max over logits are those of the softmax/sigmoid arg-max, thresholds
included."""

from __future__ import annotations

import pytest
import torch

from unetkit.infer.decision import decide, probabilities


def _logits(channels: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(channels, *shape, generator=generator)
    if channels == 2:  # exact ties and near ties, where a sloppy comparison would differ
        flat = logits.view(2, -1)
        flat[1, :50] = flat[0, :50]
        flat[1, 50:100] = flat[0, 50:100] + 1e-6
    return logits


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", [(97, 83), (17, 19, 23)])
def test_labels_equal_the_argmax_of_the_probabilities(channels, shape) -> None:
    logits = _logits(channels, shape, seed=channels)
    labels = decide(logits)
    expected = probabilities(logits).argmax(0)
    assert labels.dtype == torch.uint8 and labels.shape == shape
    assert torch.equal(labels.long(), expected)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_thresholded_labels_equal_the_probability_comparison(channels, threshold) -> None:
    logits = _logits(channels, (64, 61), seed=7)
    labels = decide(logits, threshold)
    p = probabilities(logits)[1]
    expected = p >= threshold
    differ = labels.bool() != expected
    # float rounding of the sigmoid right at the threshold may differ; nowhere else
    assert int(differ.sum()) <= 2
    assert all(abs(float(v) - threshold) < 1e-6 for v in p[differ])


def test_two_classes_need_no_softmax(monkeypatch) -> None:
    """The two-class decision is one subtraction and a comparison: no softmax, no arg-max."""
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("a full softmax/arg-max was computed")

    logits = _logits(2, (40, 40), seed=3)
    expected = probabilities(logits).argmax(0)
    monkeypatch.setattr(torch, "softmax", forbidden)
    monkeypatch.setattr(torch.Tensor, "argmax", forbidden)
    assert torch.equal(decide(logits).long(), expected)
    assert torch.equal(decide(logits[None, 0]).long(), (logits[0] > 0).long())


def test_many_classes_and_bad_thresholds() -> None:
    logits = _logits(300, (4, 5), seed=1)
    assert decide(logits).dtype == torch.int64
    assert torch.equal(decide(logits), logits.argmax(0))
    with pytest.raises(ValueError, match="two-class"):
        decide(_logits(3, (4, 4), seed=2), 0.5)
    with pytest.raises(ValueError, match="threshold must be in"):
        decide(_logits(2, (4, 4), seed=2), 1.0)
