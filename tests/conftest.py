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


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The tests' own ``$XDG_CACHE_HOME`` (one per session): training records step timings
    there (``unetkit.runtime.compile``) and no test may read or write the user's cache. A test
    whose outcome depends on cached timings sets a folder of its own."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


class RecordingBackend:
    """Warm-up calls run ``fn``; a capture records ``fn`` (computing nothing, as a CUDA graph's
    capture) and its replay calls it again on the static buffers it closed over."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.warmed, self.captures, self.replays = fail, 0, 0, 0

    def warm(self, fn):
        self.warmed += 1
        return fn()

    def capture(self, fn):
        self.captures += 1
        if self.fail is not None:
            raise self.fail

        def replay():
            self.replays += 1
            return fn()

        return replay


@pytest.fixture
def recording_backend():
    """``RecordingBackend``: a CUDA graph's capture and replay as the CPU can run them."""
    return RecordingBackend
