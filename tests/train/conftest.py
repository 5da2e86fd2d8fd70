"""Tiny on-disk data sets and configs for the training tests (fast on one CPU core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.config import Config, apply_overrides


def write_disks(root: Path, n_cases: int = 4, size: int = 32, seed: int = 0,
                stored: int = 255) -> Path:
    """``images/`` + ``masks/`` PNGs: bright noisy disks on a dark background, masks 0/stored."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_cases):
        mask = np.zeros((size, size), bool)
        for _ in range(2):
            cy, cx = rng.integers(6, size - 6, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(3, 7) ** 2
        image = 60 + 120 * mask + rng.normal(0, 12, mask.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray((mask * stored).astype(np.uint8)).save(root / "masks" / f"c{i}.png")
    return root


def make_tiny_config(*overrides: str) -> Config:
    """A small, fast UNet config for 32x32 images, no augmentation, fp32 in training and in
    validation (``precision: auto`` would follow the CPU; tests that compare precisions take
    the ``precision`` fixture and pass ``*precision.overrides``)."""
    base = [
        "model.base_width=4", "model.depth=2", "model.norm=batch",
        "data.patch_size=[32, 32]", "data.batch_size=2", "data.val_fraction=0.25",
        "data.augment.enabled=false", "train.precision=fp32", "infer.precision=fp32",
        "train.steps_per_epoch=4",
        "train.epochs=2", "train.lr=0.01", "train.device=cpu",
    ]
    return apply_overrides(Config(), base + list(overrides))


@pytest.fixture
def disks():
    """``disks(root, n_cases=4, ...)`` writes a tiny data set and returns its folder."""
    return write_disks


@pytest.fixture
def tiny_config():
    """``tiny_config(*overrides)`` -> Config."""
    return make_tiny_config


@pytest.fixture(scope="session")
def disks_dir(tmp_path_factory) -> Path:
    return write_disks(tmp_path_factory.mktemp("disks"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
