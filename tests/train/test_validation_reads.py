"""Validation reads back one map per case (the decided classes its Dice needs) and the mean of
the case losses once: no loss or label check read back per case (each waits for a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import Config, apply_values
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import resolve_precision
from unetkit.train import builders
from unetkit.train.validation import live_predictor, validate

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu")


@pytest.mark.parametrize("cases", [2, 5])
def test_validation_reads_one_map_per_case_and_the_losses_once(cases, monkeypatch):
    config = apply_values(Config(), {
        "model.spatial_dims": 2, "model.in_channels": 1, "model.out_channels": 3,
        "model.base_width": 4, "model.depth": 2, "model.norm": "instance",
        "infer.window": [32, 32], "train.device": "cpu", "train.precision": "fp32"})
    torch.manual_seed(0)
    model = build_model_from_config(config)
    plan = resolve_precision("fp32", "auto", torch.device("cpu"), "instance")
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((1, 50, 70)).astype(np.float32) for _ in range(cases)]
    masks = [rng.integers(0, 3, (50, 70)) for _ in range(cases)]
    loss_fn = builders.build_loss_fn(config)
    reads = [0]
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, _original=original, **kwargs):
            reads[0] += 1
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    metrics = validate(model, images, masks, loss_fn, config, torch.device("cpu"), plan)
    monkeypatch.undo()
    assert reads[0] == cases + 2  # before: 3 per case (label check, loss, decided map)
    predictor = live_predictor(model, config, {0: "0", 1: "1", 2: "2"}, torch.device("cpu"), plan)
    with torch.no_grad():
        losses = [float(loss_fn(predictor.predict_logits(image)[None],
                                torch.from_numpy(mask)[None]))
                  for image, mask in zip(images, masks, strict=True)]
    assert metrics["val_loss"] == pytest.approx(np.mean(losses), rel=1e-6)
