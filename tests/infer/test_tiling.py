"""Planned tiles: a crossfade across the shared margin, exact for pointwise networks, and labels
that agree with one forward over the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.infer.importance import ramp_importance
from unetkit.infer.predictor import Predictor
from unetkit.infer.strategy import Strategy
from unetkit.infer.tiling import plan_window
from unetkit.infer.windows import sliding_window_inference


def test_ramp_values_and_crossfade() -> None:
    w = ramp_importance((8,), (3,))
    expected = [0.5 / 3, 1.5 / 3, 2.5 / 3, 1, 1, 2.5 / 3, 1.5 / 3, 0.5 / 3]
    torch.testing.assert_close(w, torch.tensor(expected))
    # two windows sharing exactly 3 voxels: the weights over the shared ones sum to 1
    torch.testing.assert_close(w[-3:] + w[:3], torch.ones(3))
    plane = ramp_importance((6, 10), (2, 4))
    assert plane.shape == (6, 10) and float(plane.max()) == 1.0
    torch.testing.assert_close(plane, ramp_importance((6,), (2,))[:, None]
                               * ramp_importance((10,), (4,))[None])
    with pytest.raises(ValueError, match="one value per window axis"):
        ramp_importance((6, 10), (2,))


@pytest.mark.parametrize("spatial", [(70, 53), (21, 30, 17)])
def test_ramp_blending_is_exact_for_a_pointwise_network(spatial) -> None:
    torch.manual_seed(0)
    conv = (torch.nn.Conv2d if len(spatial) == 2 else torch.nn.Conv3d)(2, 3, 1)
    x = torch.randn(1, 2, *spatial)
    window = tuple(max(8, s // 2 + 4) for s in spatial)
    plan = plan_window(spatial, bytes_per_voxel=1000, out_channels=3, budget_mb=2.0,
                       multiple=1, margin=6)
    assert not plan.whole and all(s >= 1 for s, t in zip(plan.shared, plan.tiles,
                                                         strict=True) if t > 1)
    with torch.no_grad():
        expected = conv(x)
        out = sliding_window_inference(x, conv, window, 0.25, ramp=(6,) * len(spatial))
        planned = sliding_window_inference(x, conv, plan.window, plan.overlap,
                                           ramp=tuple(max(s, 1) for s in plan.shared))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(planned, expected, atol=1e-5, rtol=1e-5)


def test_plan_reports_the_shared_voxels() -> None:
    plan = plan_window((1024, 1024), bytes_per_voxel=1024, out_channels=2, budget_mb=300,
                       multiple=16)
    assert plan.tiles == (2, 2)
    step = 1024 - plan.window[0]  # two tiles: the second starts where it ends the axis
    assert plan.shared == (plan.window[0] - step,) * 2 and plan.shared[0] >= 32
    whole = plan_window((64, 64), bytes_per_voxel=1, out_channels=2, budget_mb=100, multiple=16)
    assert whole.whole and whole.shared == (0, 0)


@pytest.mark.parametrize("spatial_dims,size,budget", [(2, (300, 260), 3.0),
                                                      (3, (72, 64, 60), 6.0)])
def test_tiles_agree_with_one_forward(make_checkpoint, spatial_dims, size, budget) -> None:
    path = make_checkpoint(spatial_dims=spatial_dims, out_channels=2, base_width=8, depth=3)
    image = np.random.default_rng(0).normal(0, 1, (1, *size)).astype(np.float32)
    tiled = Predictor.from_checkpoint(path, settings={"infer.memory_budget_mb": budget})
    plan = Strategy(tiled.config, tiled.plan, 2).window_plan(size)
    assert not plan.whole
    whole = Predictor.from_checkpoint(path, settings={"infer.memory_budget_mb": 4096})
    a = tiled.predict(image).probabilities
    b = whole.predict(image).probabilities
    labels_a, labels_b = a.argmax(0), b.argmax(0)
    assert (labels_a == labels_b).mean() >= 0.999
    assert np.abs(a - b).mean() < 1e-3
