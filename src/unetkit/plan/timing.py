"""Time real training steps of a candidate configuration on the device that will train it.

A step's cost does not depend on the pixel values, so each candidate runs a few steps on a
random batch of its own patch and batch size through the step ``unetkit train`` runs
(``unetkit.train.step``: forward under the precision plan, loss, backward, gradient clipping,
the fused optimizer), fed as training feeds it: the batch comes from the host (pinned memory on
a GPU) and is augmented in the step only where training augments there (``data.augment.device``
as ``train.batches`` resolves it). Where worker processes augment instead (a GPU's default),
a step costs at least one batch's augmentation divided among the workers. The first steps
(allocation, kernel selection) are not counted; steps are timed between their boundaries (CUDA
events on a GPU: the queue is never drained, as in training). When the step's timings are cached
(``runtime.compile.TimingCache``, from an earlier run) and decide a faster mode than eager, the
cached seconds of that mode are what training will see and are returned. On CUDA the same steps
measure the candidate's peak memory (``torch.cuda.max_memory_allocated``); a candidate that
does not fit comes back as out of memory instead of failing the plan.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import torch

from unetkit.config import Config
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import (
    PrecisionPlan,
    model_to_memory_format,
    pick_device,
    resolve_precision,
    to_memory_format,
)
from unetkit.train import builders
from unetkit.train.batches import resolve_augment_device, resolve_workers
from unetkit.train.step import StepPieces, forward_loss, step_function


@dataclass(frozen=True)
class StepTiming:
    """One timed candidate: median seconds per step (``inf`` when out of memory) and, on CUDA,
    the peak memory its steps allocated (model, optimizer state, batch, activations)."""

    step_s: float
    peak_bytes: int | None = None
    out_of_memory: bool = False


def training_precision(config: Config, device: torch.device) -> PrecisionPlan:
    """The precision and memory layout a training run of ``config`` resolves on ``device``
    (what ``train.setup`` resolves: ``train.channels_last: auto`` is the runtime's rule there)."""
    return resolve_precision(config.train.precision, config.train.channels_last, device,
                             config.model.norm)


def time_steps(config: Config, steps: int = 3, warmup: int = 2) -> StepTiming:
    """Median seconds per training step of ``config`` (``model.out_channels`` must be set)
    as training will run it, with the peak memory on CUDA."""
    device = pick_device(config.train.device)
    workers = resolve_workers(config.data.num_workers, device)
    if device.type != "cuda":
        return StepTiming(_seconds_per_step(config, device, workers, steps, warmup))
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        step_s = _seconds_per_step(config, device, workers, steps, warmup)
    except torch.cuda.OutOfMemoryError:
        step_s = math.inf
    peak = torch.cuda.max_memory_allocated(device) - before
    gc.collect()  # the failed attempt's tensors, before the next candidate
    torch.cuda.empty_cache()
    if math.isinf(step_s):
        return StepTiming(step_s, peak, out_of_memory=True)
    return StepTiming(step_s, peak)


def _seconds_per_step(config: Config, device: torch.device, workers: int, steps: int,
                      warmup: int) -> float:
    """The step timed eagerly (or its cached mode's time), bounded below by what the workers
    need to augment a batch."""
    in_step = resolve_augment_device(config, workers).data.augment.device == "train"
    step_s = _cached_step_s(config, device)
    if step_s is None or device.type == "cuda":  # on CUDA the steps measure the memory too
        measured = _median_step(config, device, in_step, steps, warmup)
        step_s = measured if step_s is None else step_s
    if config.data.augment.enabled and not in_step and workers > 0:
        step_s = max(step_s, _augment_s(config, steps) / workers)
    return step_s


def _median_step(config: Config, device: torch.device, augment: bool, steps: int,
                 warmup: int) -> float:
    """The timing loop: ``warmup`` uncounted steps, then the median of ``steps``."""
    plan = training_precision(config, device)
    torch.manual_seed(0)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, plan, config.model.spatial_dims)
    scaler = torch.amp.GradScaler(device.type) if plan.use_scaler else None
    pieces = StepPieces(model, builders.build_optimizer(config, model),
                        builders.build_loss_fn(config), plan, device, config.train.grad_clip,
                        scaler)
    step = step_function(pieces, forward_loss)
    augmenter = builders.build_augmenter(config) if augment else None
    generator = torch.Generator().manual_seed(0)
    image, mask = _host_batch(config, pin=device.type == "cuda")
    marks = []
    for _ in range(warmup + steps):
        marks.append(_mark(device))
        x, y = image.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        if augmenter is not None:
            x, y = augmenter(x, y, generator)
        step(to_memory_format(x, plan), y)
    marks.append(_mark(device))
    measured = sorted(_seconds_between(marks, device)[warmup:])
    return measured[len(measured) // 2]


def _host_batch(config: Config, pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch ``(B, C, *patch)`` and labels ``(B, *patch)`` on the host."""
    d = config.data
    image = torch.randn(d.batch_size, config.model.in_channels, *d.patch_size)
    labels = max(config.model.out_channels or 2, 2)
    mask = torch.randint(0, labels, (d.batch_size, *d.patch_size))
    return (image.pin_memory(), mask.pin_memory()) if pin else (image, mask)


def _mark(device: torch.device) -> float | torch.cuda.Event:
    """A step boundary: the host clock, or an event in a GPU's queue (no waiting)."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _seconds_between(marks: list, device: torch.device) -> list[float]:
    """Seconds from each mark to the next (waits for the GPU once)."""
    if device.type != "cuda":
        return [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
    torch.cuda.synchronize(device)
    return [a.elapsed_time(b) / 1000.0 for a, b in zip(marks[:-1], marks[1:], strict=True)]


def _cached_step_s(config: Config, device: torch.device) -> float | None:
    """Seconds per step of the mode training would choose from cached timings, when that is
    not eager (None: nothing cached, or eager: the timing loop measures it)."""
    plan = training_precision(config, device)
    chosen, timings = builders.cached_step_mode(config, device, plan.name,
                                                scaler=plan.use_scaler)
    if chosen is None or chosen == "eager" or chosen not in timings:
        return None
    return timings[chosen].step_s


def _augment_s(config: Config, repeats: int) -> float:
    """Median seconds one worker (one thread) takes to augment a batch on the CPU."""
    augmenter = builders.build_augmenter(config)
    generator = torch.Generator().manual_seed(0)
    image, mask = _host_batch(config, pin=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        times = []
        for _ in range(max(repeats, 1)):
            started = time.perf_counter()
            augmenter(image, mask, generator)
            times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return sorted(times)[len(times) // 2]
