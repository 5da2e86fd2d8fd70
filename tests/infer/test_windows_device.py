"""Blending windows on a device never reads a value back: windows are cut, run, weighted and
accumulated there, with TTA and planned tiles; only the whole result is read, once per case.

A network on the meta device stands for one on a GPU (``tests/host_syncs.py``): any read-back
raises there, and blocking host-to-device copies are counted.
"""

from __future__ import annotations

import pytest
import torch
from tests.host_syncs import META, DeviceWaits

from unetkit.config import Config, apply_values
from unetkit.infer import decision
from unetkit.infer.windows import sliding_window_inference, sliding_window_labels
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import resolve_precision
from unetkit.train.validation import live_predictor


@pytest.mark.parametrize("ramp", [None, (4, 4, 4)])
def test_windows_are_blended_and_decided_on_the_device(ramp, monkeypatch):
    conv = torch.nn.Conv3d(1, 2, 3, padding=1).to(META)
    x = torch.empty(1, 1, 40, 50, 30, device=META)
    waits = DeviceWaits(monkeypatch)
    blended = sliding_window_inference(x, conv, (16, 16, 16), 0.5, batch_size=2, ramp=ramp)
    labels = sliding_window_labels(x, conv, (16, 16, 16), 0.5, ramp=ramp,
                                   decide=lambda logits: decision.decide(logits, 0.3))
    assert blended.shape == (1, 2, 40, 50, 30) and blended.device == META
    assert labels.shape == (1, 40, 50, 30) and labels.device == META
    assert waits.count == 0


@pytest.mark.parametrize("window", [[16, 16, 16], None])  # fixed windows, planned tiles
def test_the_predictor_blends_with_tta_on_the_device(window, monkeypatch):
    config = apply_values(Config(), {
        "model.spatial_dims": 3, "model.in_channels": 1, "model.out_channels": 3,
        "model.base_width": 4, "model.depth": 2, "model.norm": "instance",
        "infer.tta_axes": [0, 1, 2], "infer.window": window, "infer.memory_budget_mb": 1,
        "train.device": "cpu"})
    plan = resolve_precision("fp32", "auto", torch.device("cpu"), "instance")
    predictor = live_predictor(build_model_from_config(config), config,
                               {0: "a", 1: "b", 2: "c"}, META, plan)
    waits = DeviceWaits(monkeypatch)
    logits = predictor.predict_logits(torch.empty(1, 30, 40, 20, device=META))
    assert logits.shape == (3, 30, 40, 20) and logits.device == META
    assert waits.count == 0
