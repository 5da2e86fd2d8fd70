"""The run's batches: one stream across epochs, drawn by worker processes sized to the host.

A GPU step of a small patch takes a few milliseconds; drawing and augmenting its batch on the
training process's CPU takes as long, and the GPU waits. ``data.num_workers: auto`` draws
batches in worker processes (one per spare core, up to ``MAX_WORKERS``) when training on a GPU;
with workers, ``data.augment.device: auto`` augments there too (on the CPU, batch by batch, as
nnU-Net does), so the training step holds nothing but the network and can become one CUDA graph.
Batches arrive in pinned memory and are copied to the GPU without blocking.

One ``BatchStream`` (one DataLoader, its workers started once) serves the whole run: batch ``i``
of epoch ``e`` is a function of ``(seed, e, rank, i)`` (``unetkit.data.sampling``), so the
stream is the same whatever the number of workers and a resumed run starts at its batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

from unetkit.config import Config
from unetkit.runtime.distributed import DistInfo

MAX_WORKERS = 8
Batch = tuple[torch.Tensor, torch.Tensor]


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(setting: int | str, device: torch.device, processes: int = 1,
                    cores: int | None = None) -> int:
    """``data.num_workers``: a number as given; ``auto``: the cores this process's share of the
    host has beyond its own, at most ``MAX_WORKERS``, when it trains on a GPU; 0 on a CPU, whose
    step already uses every core (a worker would only take cores from it)."""
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 0
    cores = available_cores() if cores is None else cores
    return max(0, min(MAX_WORKERS, cores // max(processes, 1) - 1))


def resolve_augment_device(config: Config, workers: int) -> Config:
    """``data.augment.device: auto`` -> ``cpu`` when worker processes draw the batches, else
    ``train`` (the training device); written into the config, so the run records it and a
    resumed run augments where the interrupted one did."""
    augment = config.data.augment
    if augment.device != "auto":
        return config
    where = "cpu" if workers > 0 else "train"
    data = config.data.model_copy(update={"augment": augment.model_copy(
        update={"device": where})})
    return config.model_copy(update={"data": data})


def local_processes(info: DistInfo) -> int:
    """Training processes on this host (torchrun's ``LOCAL_WORLD_SIZE``; 1 without DDP)."""
    if not info.enabled:
        return 1
    return int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))


def _pinned(batches: Iterator[Batch]) -> Iterator[Batch]:
    for image, mask in batches:
        yield image.pin_memory(), mask.pin_memory()


class BatchStream:
    """Batches from batch ``start`` of ``epoch`` on, into the following epochs.

    ``position`` is the ``(epoch, batch)`` the next batch is; ``take(n)`` yields up to ``n``.
    """

    def __init__(self, sampler: Any, epoch: int, start: int, num_workers: int = 0,
                 pin: bool = False) -> None:
        sampler.set_epoch(epoch, start, following=True)
        self.per_epoch = sampler.batches_per_epoch
        self.position = (epoch, start)
        if num_workers > 0:
            loader = torch.utils.data.DataLoader(sampler, batch_size=None,
                                                 num_workers=num_workers, pin_memory=pin)
            self._batches: Iterator[Batch] | None = iter(loader)
        else:
            self._batches = _pinned(iter(sampler)) if pin else iter(sampler)

    def take(self, count: int) -> Iterator[Batch]:
        """Up to ``count`` next batches (fewer when the caller stops early)."""
        assert self._batches is not None, "BatchStream used after close()"
        for _ in range(count):
            batch = next(self._batches)
            epoch, index = self.position
            index += 1
            self.position = (epoch + 1, 0) if index == self.per_epoch else (epoch, index)
            yield batch

    def close(self) -> None:
        """Stop the workers (the DataLoader iterator shuts them down when released)."""
        self._batches = None
