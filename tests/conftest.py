"""Small real checkpoints (unetkit UNet, a few hundred weights) built inside the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unetkit.config import Config, config_to_dict
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import save_checkpoint


def build_checkpoint(
    path: Path,
    *,
    out_channels: int = 3,
    spatial_dims: int = 2,
    in_channels: int = 1,
    padding: str = "same",
    depth: int = 2,
    normalization: dict[str, Any] | None = None,
    mask_values: dict[int, int] | None = None,
    infer: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    **model: Any,
) -> Path:
    """Write a checkpoint of a tiny UNet with non-trivial BatchNorm statistics.

    ``model``: further ``model`` config fields, e.g. ``strides`` and ``kernel_sizes``.
    """
    config = Config.model_validate({
        "model": {"spatial_dims": spatial_dims, "in_channels": in_channels,
                  "out_channels": out_channels, "base_width": 4, "depth": depth,
                  "padding": padding, "norm": "batch", **model},
        "data": data or {},
        "train": {"precision": "fp32"},
        "infer": {"precision": "fp32", **(infer or {})},
    })
    torch.manual_seed(seed)
    model = build_model("unet", **config.model.build_options())
    for module in model.modules():  # random running statistics so that fusion is exercised
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    labels = {i: ("background" if i == 0 else f"c{i}") for i in range(max(out_channels, 2))}
    checkpoint = {
        "config": config_to_dict(config),
        "model_state": model.state_dict(),
        "labels": labels,
        "preprocessing": {"normalization": normalization or {"scheme": "zscore"}},
    }
    if mask_values is not None:
        checkpoint["mask_values"] = mask_values
    return save_checkpoint(checkpoint, path)


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """``make_checkpoint(name="model.pt", **options)`` -> path of a fresh checkpoint."""

    def make(name: str = "model.pt", **options: Any) -> Path:
        return build_checkpoint(tmp_path / name, **options)

    return make


@pytest.fixture
def memory_peak():
    """``memory_peak(size, budget_mb, *models)``: bytes of RSS a fresh process adds over one
    prediction of a ``size`` x ``size`` image (``tests/infer/memory_probe.py``; several models:
    their ensemble), with this checkout's unetkit first on the path."""
    import json
    import os
    import subprocess
    import sys

    import unetkit

    def measure(size: int, budget_mb: float, *models: Path) -> int:
        source = str(Path(unetkit.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([source,
                                                            os.environ.get("PYTHONPATH", "")])}
        script = Path(__file__).with_name("infer") / "memory_probe.py"
        out = subprocess.run([sys.executable, str(script), str(size), str(budget_mb),
                              *map(str, models)], capture_output=True, text=True, check=True,
                             env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak"]

    return measure
