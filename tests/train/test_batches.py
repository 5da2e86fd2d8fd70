"""Batch workers sized to the host, and where augmentation runs."""

from __future__ import annotations

import pytest
import torch

from unetkit.config import Config, apply_overrides
from unetkit.config.io import ConfigError
from unetkit.runtime.distributed import DistInfo
from unetkit.train.batches import (
    MAX_WORKERS,
    local_processes,
    resolve_augment_device,
    resolve_workers,
)

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize(("setting", "device", "processes", "cores", "workers"), [
    ("auto", CUDA, 1, 16, MAX_WORKERS),
    ("auto", CUDA, 1, 4, 3),
    ("auto", CUDA, 4, 16, 3),  # four GPUs share the host
    ("auto", CUDA, 1, 1, 0),
    ("auto", CPU, 1, 64, 0),  # a CPU step already uses every core
    (3, CPU, 1, 2, 3),
    (0, CUDA, 1, 16, 0),
])
def test_resolve_workers(setting, device, processes, cores, workers):
    assert resolve_workers(setting, device, processes, cores) == workers


def test_auto_uses_this_hosts_cores():
    assert 0 <= resolve_workers("auto", CUDA) <= MAX_WORKERS


def test_local_processes():
    assert local_processes(DistInfo()) == 1
    assert local_processes(DistInfo(rank=1, world_size=4)) == 4


@pytest.mark.parametrize(("setting", "workers", "where"), [
    ("auto", 2, "cpu"), ("auto", 0, "train"), ("train", 4, "train"), ("cpu", 0, "cpu")])
def test_augmentation_goes_where_the_batches_are_drawn(setting, workers, where):
    config = apply_overrides(Config(), [f"data.augment.device={setting}"])
    assert resolve_augment_device(config, workers).data.augment.device == where


def test_the_options_are_validated():
    config = apply_overrides(Config(), ["data.num_workers=2", "train.compile=on",
                                        "train.cuda_graphs=off"])
    assert config.data.num_workers == 2 and config.train.compile == "on"
    assert config.train.cuda_graphs == "off"  # YAML's bare off is a boolean: read back
    assert Config().data.num_workers == "auto"
    with pytest.raises(ConfigError, match="num_workers"):
        apply_overrides(Config(), ["data.num_workers=-1"])
    with pytest.raises(ConfigError, match="train.compile"):
        apply_overrides(Config(), ["train.compile=maybe"])
    with pytest.raises(ConfigError, match="augment.device"):
        apply_overrides(Config(), ["data.augment.device=gpu"])
